// block_device.h: the few block-layer ioctls thinsnap needs besides
// device-mapper's own: discard and capacity.
//
// Like the rest of dm/, this knows nothing of snapshots; it speaks of device
// nodes and byte ranges.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

namespace thinsnap::dm {

// A byte range of a block device.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// A block device held open with O_EXCL: while it lives, nobody can mount the
// device or open it exclusively, so what is read from it through another
// (non-exclusive) open cannot change under the holder.
class ExclusiveDevice {
 public:
  // Unavailable (EBUSY) if the device is mounted or held exclusively.
  static Result<ExclusiveDevice> Open(const std::string& path);

  // Discards `ranges` (BLKDISCARD), telling the device their contents are no
  // longer needed. On a dm-thin device this unmaps the blocks; blocks no
  // other thin device shares go back to the data device (on a loop-backed
  // pool, back to the host as holes in the data file). Ranges are rounded
  // inward to the logical block size; empty ones are skipped.
  Status Discard(const std::vector<ByteRange>& ranges);

  // Flushes the device's write cache (fsync): on a dm-thin device the pool
  // commits its metadata, so every mapping made so far is on disk.
  Status Flush();

 private:
  ExclusiveDevice(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
};

// The size in bytes of the block device at `path` (BLKGETSIZE64).
Result<uint64_t> BlockDeviceBytes(const std::string& path);

}  // namespace thinsnap::dm
