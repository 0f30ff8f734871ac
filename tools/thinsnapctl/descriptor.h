// The pool descriptor: DIR/pool.toml, written by `pool create --loop` so that
// `pool activate` can rebuild the same pool after a reboot.
//
// File names are stored relative to DIR, so the directory can be moved.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace thinsnap::ctl {

struct PoolDescriptor {
  std::string name;             // device-mapper name of the pool
  std::string data_file;        // relative to the pool directory
  std::string meta_file;        // relative to the pool directory
  uint64_t block_size = 0;      // bytes
  uint64_t low_water_mark = 0;  // data blocks
};

inline constexpr const char* kDescriptorFile = "pool.toml";

// Writes DIR/pool.toml atomically (temporary file, fsync, rename).
Status WriteDescriptor(const std::string& dir, const PoolDescriptor& desc);

// NotFound if DIR/pool.toml is missing; InvalidArgument if it is malformed.
Result<PoolDescriptor> ReadDescriptor(const std::string& dir);

}  // namespace thinsnap::ctl
