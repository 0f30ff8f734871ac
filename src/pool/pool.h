// ThinPool: the block-level operations the snapshotter needs from a thin pool.
//
// The interface speaks only of thin device ids; it knows nothing of snapshot
// keys, kinds or labels. The production implementation (dm_pool.h) drives a
// device-mapper thin-pool through libdevmapper; tests use an in-memory fake.
//
// Thread safety: implementations must be safe to call from many threads. Pool
// messages (CreateThin/CreateSnap/Delete) may be serialised
// internally; activation and deactivation of different ids must not be.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "pool/byte_range.h"

namespace thinsnap {

// dm-thin device ids are 24 bits wide.
using ThinId = uint32_t;
inline constexpr ThinId kMaxThinId = 0xffffff;

enum class Access { kReadWrite, kReadOnly };

// What one thin device holds, from the pool's own metadata.
struct ThinUsage {
  ThinId id = 0;
  uint64_t mapped_bytes = 0;     // every block it maps
  uint64_t exclusive_bytes = 0;  // blocks no other thin device shares
};

struct PoolStatus {
  uint64_t transaction_id = 0;
  uint64_t data_block_bytes = 0;  // size of one data block
  uint64_t data_used_blocks = 0;
  uint64_t data_total_blocks = 0;
  uint64_t meta_used_blocks = 0;  // 4 KiB metadata blocks
  uint64_t meta_total_blocks = 0;
  bool read_only = false;          // mode "ro"
  bool out_of_data_space = false;  // mode "out_of_data_space"
  bool needs_check = false;
  bool failed = false;             // status "Fail"
  bool error_if_no_space = false;  // false means queue_if_no_space
};

class ThinPool {
 public:
  virtual ~ThinPool() = default;

  // The pool's device-mapper name.
  virtual const std::string& name() const = 0;
  // Size of one data block: the unit of allocation, copy-on-write and discard.
  virtual uint64_t block_bytes() const = 0;

  // --- Pool metadata messages. Each is durable when it returns. ---
  // AlreadyExists (EEXIST) if `id` is taken.
  virtual Status CreateThin(ThinId id) = 0;
  // Snapshot of `origin` as `id`. If `origin` is active it is suspended around
  // the message, as the kernel requires. AlreadyExists if `id` is taken,
  // NotFound if `origin` does not exist.
  virtual Status CreateSnap(ThinId id, ThinId origin) = 0;
  // NotFound (ENODATA) if `id` does not exist; Unavailable (EBUSY) if it is
  // still active.
  virtual Status Delete(ThinId id) = 0;

  virtual Result<PoolStatus> QueryStatus() = 0;

  // The exact set of thin ids in the pool's metadata (not just active ones).
  virtual Result<std::vector<ThinId>> ListThinIds() = 0;
  // Mapped and exclusive bytes of every thin id, exact, from the metadata.
  // Slow (it reads the whole metadata): for administrators, not requests.
  virtual Result<std::vector<ThinUsage>> ListUsage() = 0;

  // --- Thin device activation. ---
  // The block-device node of `id` when active: /dev/mapper/<pool>-thin-<id>.
  virtual std::string DevicePath(ThinId id) const = 0;
  // Loads `0 <size/512> thin <pool> <id>` under the id-derived name. A no-op if
  // the device is already active with the same table and access; completes an
  // activation that a crash cut short (no live table, suspended, no node).
  virtual Status Activate(ThinId id, uint64_t size_bytes, Access access) = 0;
  // Flushes and removes the device; a no-op if it is not active. If the device
  // is still open, schedules deferred removal and returns Unavailable (EBUSY).
  // Fails without removing if the flush fails: the caller keeps the data.
  virtual Status Deactivate(ThinId id) = 0;
  // As Deactivate, but without the flush, for a device whose thin id is about
  // to be deleted: a full pool cannot flush, and deleting must still work then.
  // Never defers: while anything holds the device open (a VM that hot-plugged
  // it, a mount) it returns Unavailable (EBUSY) and leaves the device as it is,
  // so the holder keeps its data. Also removes a private activation that
  // DiscardInactive left behind (a crash).
  virtual Status DeactivateForDelete(ThinId id) = 0;
  // Takes the device of `id`, which is about to be discarded and deleted, out
  // of clients' reach: its name and node go, but the kernel device may stay,
  // privately, for DiscardInactive (cheaper than a removal and a new
  // activation). Like DeactivateForDelete, Unavailable (EBUSY) and nothing
  // changed while anything holds it open; a no-op if it is not active.
  virtual Status Withdraw(ThinId id) = 0;
  // Ids of this pool's thin devices that are currently active.
  virtual Result<std::vector<ThinId>> ListActive() = 0;
  // The active ids whose activation a kill cut short: no live table,
  // suspended, or without their /dev/mapper node. Activate completes them.
  virtual Result<std::vector<ThinId>> ListHalfMade() = 0;
  // Bytes mapped by an active thin device (mapped sectors x 512).
  virtual Result<uint64_t> MappedBytes(ThinId id) = 0;

  // --- Giving space back. ---
  // False when a discard on a thin device cannot reach the data device (the
  // pool ignores discards, or does not pass them down): a delete then frees
  // as much, for the pool alone, and discarding first is wasted work.
  virtual bool DiscardsReachData() const = 0;
  // For each id, the byte ranges of the blocks it wrote itself, as opposed
  // to those it inherited from the device it was snapshotted from: the only
  // blocks a discard of it can give back. Each id's are read from one
  // consistent commit of the pool's metadata; each id has its own result
  // (NotFound if it is gone). The devices must be inactive, so that nothing changes
  // their mappings meanwhile.
  virtual Result<std::vector<Result<std::vector<ByteRange>>>> OwnRanges(
      const std::vector<ThinId>& ids) = 0;
  // Discards `ranges` of the inactive device `id` (nullopt: everything it
  // maps), before it is deleted. Blocks no other thin device maps return to
  // the data device (on a loop pool the data file shrinks); shared ones are
  // only unmapped from `id`. It works on the private device Withdraw left, or
  // a private activation of `span_bytes`, whose name no client was ever
  // given, so no holder of the snapshot's own device can be affected; the
  // private device is gone afterwards. A private device that a kill left
  // half-made (no table, suspended, no node) is completed first.
  // FailedPrecondition if `id` is active.
  virtual Status DiscardInactive(ThinId id, uint64_t span_bytes,
                                 const std::optional<std::vector<ByteRange>>& ranges) = 0;
  // Discards the ranges `find_unused` names on the active device `id`, e.g.
  // blocks its filesystem does not use. The device is held exclusively from
  // before `find_unused` runs until the discard is done, so nobody can mount
  // it and change what was read meanwhile. Unavailable (EBUSY) if it is
  // mounted now.
  using UnusedRangesFn = std::function<Result<std::vector<ByteRange>>()>;
  virtual Status DiscardUnused(ThinId id, const UnusedRangesFn& find_unused) = 0;

  // --- Growing. ---
  // Grows the pool online to `data_bytes` of data and `meta_bytes` of
  // metadata (a size at or below the current one is left alone).
  // FailedPrecondition for pools this process cannot grow: an LVM pool grows
  // through lvextend or LVM's own autoextend.
  virtual Status Grow(uint64_t data_bytes, uint64_t meta_bytes) = 0;
};

}  // namespace thinsnap
