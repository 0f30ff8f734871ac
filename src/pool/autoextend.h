// PoolAutoextender: grows a loop-backed pool before it fills, as LVM's
// thin_pool_autoextend_threshold / _percent do for LVM pools.
//
// A background thread reads the pool's status (no metadata commit) every
// `interval`. When data or metadata use reaches `threshold_percent`, that
// part grows by `grow_percent` of its size, up to `max_data_bytes` for data
// and dm-thin's 16 GiB for metadata. Reaching the maximum, or a pool that
// cannot be grown here (LVM), is logged once; the pool then fills as it would
// without autoextend, and error_if_no_space fails writes rather than hanging.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "base/status.h"
#include "pool/pool.h"

namespace thinsnap {

struct AutoextendOptions {
  double threshold_percent = 0;  // 0: off
  double grow_percent = 20;
  uint64_t max_data_bytes = 0;
  // Short, so that a steady writer cannot fill the rest of the pool between
  // two looks: a status read costs one ioctl.
  std::chrono::milliseconds interval{1000};
};

// dm-thin uses at most this much metadata.
inline constexpr uint64_t kMaxPoolMetadataBytes = 16ull << 30;

class PoolAutoextender {
 public:
  PoolAutoextender(ThinPool& pool, AutoextendOptions options);
  ~PoolAutoextender();  // stops the thread
  PoolAutoextender(const PoolAutoextender&) = delete;
  PoolAutoextender& operator=(const PoolAutoextender&) = delete;

  void Start();
  // One look at the pool, growing it if due. Returns whether it grew.
  Result<bool> CheckOnce();

 private:
  void Run();

  ThinPool& pool_;
  const AutoextendOptions options_;
  bool gave_up_ = false;  // at the maximum, or not growable: logged once

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace thinsnap
