// ByteRange: a span of bytes on a block device.
#pragma once

#include <cstdint>

namespace thinsnap {

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const ByteRange&) const = default;
};

}  // namespace thinsnap
