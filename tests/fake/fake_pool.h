// In-memory fakes of ThinPool and Filesystem for unit tests and benchmarks.
// They model the kernel's rules that the snapshotter depends on (EEXIST,
// ENODATA, EBUSY on delete of an active device) but no
// data. Never shipped as a backend.
#pragma once

#include <atomic>
#include <memory>

#include "fs/filesystem.h"
#include "pool/pool.h"

namespace thinsnap::testing {

// Knobs tests use to inspect the fake or inject faults.
struct FakePoolControl {
  virtual ~FakePoolControl() = default;
  virtual std::vector<ThinId> ThinIds() const = 0;
  virtual std::vector<ThinId> ActiveIds() const = 0;
  virtual void SetMappedBytes(ThinId id, uint64_t bytes) = 0;
  virtual void SetDataUsage(uint64_t used_blocks, uint64_t total_blocks) = 0;
  virtual void SetNeedsCheck(bool needs_check) = 0;
  // Marks an active device as open (mounted): Deactivate then returns EBUSY.
  virtual void SetOpen(ThinId id, bool open) = 0;
  // The next pool message fails with this errno (0 = none).
  virtual void FailNextMessage(int err) = 0;
  // What OwnRanges reports for `id` (by default nothing: it never wrote).
  virtual void SetOwnRanges(ThinId id, std::vector<ByteRange> ranges) = 0;
  // The ids DiscardInactive discarded something of, in order, and the ranges
  // it (or DiscardUnused) discarded of each.
  virtual std::vector<ThinId> DiscardedIds() const = 0;
  virtual std::vector<ByteRange> DiscardedRanges(ThinId id) const = 0;
  // How many times Grow was called.
  virtual int Grows() const = 0;
};

// The pool is shared so that a test can hand the same "kernel state" to a
// second Snapshotter after a simulated restart.
std::shared_ptr<FakePoolControl> MakeFakePoolState();
std::unique_ptr<ThinPool> MakeFakePool(std::shared_ptr<FakePoolControl> state);
std::unique_ptr<ThinPool> MakeFakePool();
// Knobs of the fake filesystem.
struct FakeFilesystemControl {
  std::atomic<int> grows{0};                // Grow calls that succeeded
  std::atomic<bool> fail_next_grow{false};  // the next Grow fails with EIO
};
std::unique_ptr<Filesystem> MakeFakeFilesystem(
    std::shared_ptr<FakeFilesystemControl> control = nullptr);

}  // namespace thinsnap::testing
