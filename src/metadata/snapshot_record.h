// SnapshotRecord: one snapshot as the metadata store records it.
#pragma once

#include <cstdint>

#include "metadata/snapshot_types.h"
#include "pool/pool.h"

namespace thinsnap {

struct SnapshotRecord {
  int64_t id = 0;  // internal, never reused
  Info info;
  ThinId thin_id = 0;
  uint64_t size_bytes = 0;
  // Recorded when committed: what the device held at that moment.
  uint64_t mapped_bytes = 0;
  int64_t usage_bytes = 0;
  int64_t usage_inodes = 0;
};

}  // namespace thinsnap
