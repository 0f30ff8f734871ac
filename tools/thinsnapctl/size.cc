#include "size.h"

#include <array>
#include <cctype>
#include <utility>

namespace thinsnap::ctl {

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

constexpr std::array<std::pair<std::string_view, int>, 10> kUnits = {{
    {"b", 0},
    {"k", 10},
    {"kib", 10},
    {"m", 20},
    {"mib", 20},
    {"g", 30},
    {"gib", 30},
    {"t", 40},
    {"tib", 40},
    {"", 0},
}};

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  const std::string quoted = "'" + std::string(text) + "'";
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0) {
    return Status::InvalidArgument("bad size " + quoted +
                                   ": expected a whole number with an optional unit "
                                   "(K, M, G, T, KiB, MiB, GiB, TiB)");
  }
  if (digits < text.size() && (text[digits] == '.' || text[digits] == ',')) {
    return Status::InvalidArgument("bad size " + quoted +
                                   ": fractions are not supported; use a smaller unit");
  }
  uint64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    const uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) {
      return Status::InvalidArgument("bad size " + quoted + ": too large");
    }
    value = value * 10 + digit;
  }
  const std::string_view suffix = text.substr(digits);
  for (const auto& [unit, shift] : kUnits) {
    if (!EqualsIgnoreCase(suffix, unit)) continue;
    if (shift > 0 && value > (UINT64_MAX >> shift)) {
      return Status::InvalidArgument("bad size " + quoted + ": too large");
    }
    return value << shift;
  }
  return Status::InvalidArgument("bad size " + quoted + ": unknown unit '" + std::string(suffix) +
                                 "' (use K, M, G, T, KiB, MiB, GiB or TiB)");
}

std::string FormatSize(uint64_t bytes) {
  static constexpr std::array<std::pair<const char*, int>, 4> kNames = {
      {{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}}};
  if (bytes == 0) return "0B";
  for (const auto& [name, shift] : kNames) {
    const uint64_t unit = uint64_t{1} << shift;
    if (bytes % unit == 0) return std::to_string(bytes / unit) + name;
  }
  return std::to_string(bytes) + "B";
}

}  // namespace thinsnap::ctl
