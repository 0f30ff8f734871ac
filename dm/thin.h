// thin.h: the thin-pool and thin targets as text, and the pool's messages.
//
// Table builders and parsers are pure functions (no ioctls), so they are
// tested on the exact lines the kernel prints. Parsers never trust their
// input: a malformed line yields InvalidArgument, never a crash.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "dm/device_mapper.h"

namespace thinsnap::dm {

// --- Tables. ---

// "<start> <len> thin-pool <meta> <data> <block sectors> <low water> <n> <features...>"
struct ThinPoolTable {
  uint64_t length_sectors = 0;
  DevNum metadata_dev;
  DevNum data_dev;
  uint64_t block_sectors = 0;  // data block size, in 512-byte sectors
  uint64_t low_water_blocks = 0;
  std::vector<std::string> features;  // e.g. "skip_block_zeroing", "error_if_no_space"

  Target ToTarget() const;
};
// Parses a full table line as GetTable()/dmsetup print it.
Result<ThinPoolTable> ParseThinPoolTable(std::string_view line);

// "0 <length> thin <pool M:m> <id>".
Target ThinTarget(uint64_t length_sectors, DevNum pool, uint32_t thin_id);

// --- Status lines. ---

enum class PoolMode { kReadWrite, kReadOnly, kOutOfDataSpace };
enum class DiscardMode { kPassdown, kNoPassdown, kIgnore };

struct ThinPoolStatus {
  // The pool reports "Fail"; no other field is set.
  bool failed = false;
  uint64_t transaction_id = 0;
  uint64_t meta_used_blocks = 0;  // 4 KiB metadata blocks
  uint64_t meta_total_blocks = 0;
  uint64_t data_used_blocks = 0;
  uint64_t data_total_blocks = 0;
  std::optional<uint64_t> held_metadata_root;  // set while a metadata snapshot is held
  PoolMode mode = PoolMode::kReadWrite;
  DiscardMode discard = DiscardMode::kPassdown;
  bool error_if_no_space = false;  // false: queue_if_no_space
  bool needs_check = false;
  std::optional<uint64_t> metadata_low_water;  // absent on older kernels
};
// Parses a full thin-pool status line, e.g.
// "0 8388608 thin-pool 7 3294/32768 465/65536 - rw discard_passdown error_if_no_space - 1024".
Result<ThinPoolStatus> ParseThinPoolStatus(std::string_view line);

struct ThinStatus {
  bool failed = false;  // "Fail"; no other field is set
  uint64_t mapped_sectors = 0;
  std::optional<uint64_t> highest_mapped_sector;  // absent ("-") if nothing is mapped
};
// Parses a full thin status line, e.g. "0 2097152 thin 59520 2097151".
Result<ThinStatus> ParseThinStatus(std::string_view line);

// --- Pool messages (sent with SendMessage; errno as the kernel returns it). ---
//
// Send them one at a time per pool. The kernel does not: it commits the
// metadata after a message has dropped its lock, and create_thin and
// create_snap look for an existing id only in committed metadata. Two
// concurrent creates of one id corrupt the pool's metadata (seen as "unable to
// decrement block", and the pool went read-only); a delete racing the create
// of its id can leave it inconsistent too (__delete_device).

// AlreadyExists (EEXIST) if `id` is taken.
Status SendCreateThin(const std::string& pool, uint32_t id);
// The caller must suspend an active origin around this message.
Status SendCreateSnap(const std::string& pool, uint32_t id, uint32_t origin);
// NotFound (ENODATA) if missing; Unavailable (EBUSY) if active.
Status SendDelete(const std::string& pool, uint32_t id);
// Hold / release a metadata snapshot that thin_ls --metadata-snap can read.
Status SendReserveMetadataSnap(const std::string& pool);
Status SendReleaseMetadataSnap(const std::string& pool);

}  // namespace thinsnap::dm
