// The containerd.io/snapshot/max-size label: how large a new snapshot asks
// to be (containerd PR 13520). The value is decimal bytes. It is a hint: a
// snapshot never gets smaller than its parent, so a value at or below the
// parent's size is honoured as the parent's size.
#pragma once

#include <cstdint>

#include "base/status.h"
#include "metadata/snapshot_types.h"

namespace thinsnap {

inline constexpr char kMaxSizeLabel[] = "containerd.io/snapshot/max-size";

// The size `labels` ask for, rounded up to whole 4 KiB filesystem blocks, or
// 0 when the label is absent. InvalidArgument if the value is not a positive
// decimal integer, or asks for more than `limit` bytes (max_snapshot_size).
Result<uint64_t> RequestedSize(const Labels& labels, uint64_t limit);

}  // namespace thinsnap
