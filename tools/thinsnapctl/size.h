// Byte-size strings as typed on a command line ("64KiB", "4G", "1048576").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace thinsnap::ctl {

// Parses a non-negative integer with an optional binary unit suffix:
// none or B (bytes); K, KiB; M, MiB; G, GiB; T, TiB (case-insensitive, all
// powers of 1024, as LVM reads them). Fractions, signs, blanks, unknown
// suffixes and values above 2^64-1 are InvalidArgument.
Result<uint64_t> ParseSize(std::string_view text);

// The largest unit that divides `bytes` exactly, e.g. 65536 -> "64KiB".
std::string FormatSize(uint64_t bytes);

}  // namespace thinsnap::ctl
