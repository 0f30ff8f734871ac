// JSON output for `--json`: values are built as toml++ tables and arrays and
// printed with its JSON formatter, so no second serialisation library is
// needed. Keys come out sorted.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <iostream>

namespace thinsnap::ctl {

inline void PrintJson(const toml::node& node) { std::cout << toml::json_formatter(node) << "\n"; }

// JSON numbers are printed from int64; byte counts of real pools fit.
inline int64_t JsonInt(uint64_t v) { return static_cast<int64_t>(v); }

}  // namespace thinsnap::ctl
