#include "pool/thin_delta.h"

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

}  // namespace

Result<std::vector<ByteRange>> ParseThinDeltaOwnRanges(std::string_view xml, uint64_t block_bytes) {
  if (xml.find("<superblock") == std::string_view::npos ||
      xml.find("</superblock>") == std::string_view::npos) {
    return Status::InvalidArgument("not thin_delta output: no <superblock> element");
  }
  std::vector<ByteRange> out;
  // In --verbose output the kind is an enclosing element and each run a
  // nested <range>; in the compact form the run is the kind's own element.
  bool inside_own_kind = false;
  size_t pos = 0;
  while ((pos = xml.find('<', pos)) != std::string_view::npos) {
    const size_t close = xml.find('>', pos);
    if (close == std::string_view::npos) return Status::InvalidArgument("unterminated element");
    const std::string_view element = xml.substr(pos, close - pos + 1);
    pos = close + 1;
    // "<name ...>", "<name .../>" or "</name>"; a closing one keeps its '/'.
    const size_t name_end = element.find_first_of(" />", 2);
    const std::string_view name = element.substr(1, name_end - 1);
    const bool self_closing = element.size() >= 2 && element[element.size() - 2] == '/';
    const bool own_kind = name == "different" || name == "right_only";
    if (own_kind && !self_closing) {
      inside_own_kind = true;
      continue;
    }
    if (name == "/different" || name == "/right_only") {
      inside_own_kind = false;
      continue;
    }
    if (!(own_kind || (inside_own_kind && name == "range"))) continue;
    const auto begin = Attribute(element, "begin");
    const auto length = Attribute(element, "length");
    if (!begin || !length) {
      return Status::InvalidArgument("thin_delta run without begin/length: " +
                                     std::string(element));
    }
    const ByteRange r{*begin * block_bytes, *length * block_bytes};
    if (!out.empty() && out.back().offset + out.back().length == r.offset) {
      out.back().length += r.length;
    } else if (r.length > 0) {
      out.push_back(r);
    }
  }
  return out;
}

}  // namespace thinsnap
