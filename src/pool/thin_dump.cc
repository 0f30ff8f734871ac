#include "pool/thin_dump.h"

#include <charconv>
#include <optional>
#include <string>

namespace thinsnap {
namespace {

// The unsigned value of attribute `name` in `element`, if present.
std::optional<uint64_t> Attribute(std::string_view element, std::string_view name) {
  const std::string key = " " + std::string(name) + "=\"";
  const size_t at = element.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  const char* begin = element.data() + at + key.size();
  const char* end = element.data() + element.size();
  uint64_t value = 0;
  auto r = std::from_chars(begin, end, value);
  if (r.ec != std::errc() || r.ptr == end || *r.ptr != '"') return std::nullopt;
  return value;
}

Status Malformed(std::string_view element) {
  return Status::InvalidArgument("unexpected thin_dump element: " +
                                 std::string(element.substr(0, 200)));
}

}  // namespace

Result<std::map<ThinId, std::vector<ByteRange>>> ParseThinDumpOwnRanges(std::string_view xml,
                                                                        uint64_t block_bytes) {
  if (xml.find("<superblock") == std::string_view::npos ||
      xml.find("</superblock>") == std::string_view::npos) {
    return Status::InvalidArgument("not thin_dump output: no <superblock> element");
  }
  std::map<ThinId, std::vector<ByteRange>> out;
  std::vector<ByteRange>* device = nullptr;  // the <device> being read
  uint64_t created = 0;                      // its creation_time
  size_t pos = 0;
  while ((pos = xml.find('<', pos)) != std::string_view::npos) {
    const size_t close = xml.find('>', pos);
    if (close == std::string_view::npos) return Status::InvalidArgument("unterminated element");
    const std::string_view element = xml.substr(pos, close - pos + 1);
    pos = close + 1;
    // "<name ...>", "<name .../>" or "</name>"; a closing one keeps its '/'.
    const size_t name_end = element.find_first_of(" />", 2);
    const std::string_view name = element.substr(1, name_end - 1);
    if (name == "device") {
      const auto id = Attribute(element, "dev_id");
      const auto time = Attribute(element, "creation_time");
      if (!id || !time || *id > kMaxThinId) return Malformed(element);
      device = &out[static_cast<ThinId>(*id)];
      created = *time;
      continue;
    }
    if (name == "/device") {
      device = nullptr;
      continue;
    }
    std::optional<uint64_t> begin, length;
    if (name == "range_mapping") {
      begin = Attribute(element, "origin_begin");
      length = Attribute(element, "length");
    } else if (name == "single_mapping") {
      begin = Attribute(element, "origin_block");
      length = 1;
    } else {
      continue;
    }
    const auto time = Attribute(element, "time");
    if (device == nullptr || !begin || !length || !time) return Malformed(element);
    if (*time < created) continue;  // inherited from the origin
    const ByteRange r{*begin * block_bytes, *length * block_bytes};
    if (!device->empty() && device->back().offset + device->back().length == r.offset) {
      device->back().length += r.length;
    } else if (r.length > 0) {
      device->push_back(r);
    }
  }
  return out;
}

}  // namespace thinsnap
