#include "snapshot/size_label.h"

#include <charconv>

namespace thinsnap {

Result<uint64_t> RequestedSize(const Labels& labels, uint64_t limit) {
  auto it = labels.find(kMaxSizeLabel);
  if (it == labels.end()) return uint64_t{0};
  const std::string& text = it->second;
  uint64_t bytes = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), bytes);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || bytes == 0) {
    return Status::InvalidArgument(std::string("label ") + kMaxSizeLabel + "=\"" + text +
                                   "\" is not a positive number of bytes");
  }
  if (bytes > limit) {
    return Status::InvalidArgument(std::string("label ") + kMaxSizeLabel + "=" + text +
                                   " exceeds max_snapshot_size (" + std::to_string(limit) +
                                   " bytes)");
  }
  constexpr uint64_t kBlock = 4096;
  return (bytes + kBlock - 1) / kBlock * kBlock;
}

}  // namespace thinsnap
