// thinsnapd configuration: a flat TOML file, overridable by flags.
//
// Every key is optional in the file; pool_name must be set (by file or flag)
// before the daemon starts. Unknown keys and values of the wrong type are
// errors, reported as "<file>:<line>: <key>: <problem>", so that a typo never
// silently falls back to a default.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace thinsnap {

struct Config {
  std::string root_dir = "/var/lib/thinsnap";  // holds metadata.db
  std::string socket = "/run/thinsnap/thinsnap.sock";
  std::string pool_name;                          // the dm thin-pool to use
  uint64_t base_size_bytes = 10ull << 30;         // size of a snapshot without a max-size label
  uint64_t max_snapshot_size_bytes = 1ull << 40;  // largest containerd.io/snapshot/max-size
  std::string fs_type = "ext4";
  std::vector<std::string> fs_options;  // extra mkfs arguments
  bool async_remove = false;
  bool discard_unused_blocks = true;  // discard blocks no snapshot needs (reclaimer.h)
  double min_free_space_percent = 10.0;
  std::string log_level = "info";  // trace, debug, info, warn, error, critical, off
};

// Reads `path` over the defaults above. NotFound if the file does not exist;
// InvalidArgument for syntax errors, unknown keys, wrong types and bad values.
Result<Config> LoadConfig(const std::string& path);

// Checks what a running daemon needs, after flags were applied: pool_name set,
// absolute paths, a socket path that fits in sockaddr_un, a known log level.
Status ValidateConfig(const Config& config);

// "10GiB", "512M", "4096" or "4096B". K/M/G/T are binary like KiB/MiB/GiB/TiB.
// The result must be a positive multiple of 512 (the device-mapper sector).
Result<uint64_t> ParseSize(std::string_view text);

}  // namespace thinsnap
