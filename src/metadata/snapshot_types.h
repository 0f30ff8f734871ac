// The snapshot model as containerd sees it: kinds, info, mounts and usage.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace thinsnap {

// Values match containerd's snapshots.v1.Kind.
enum class Kind { kUnknown = 0, kView = 1, kActive = 2, kCommitted = 3 };

const char* KindName(Kind kind);  // "view", "active", "committed", "unknown"

using Labels = std::map<std::string, std::string>;

struct Info {
  std::string name;    // the key (active/view) or the committed name
  std::string parent;  // empty for a root snapshot
  Kind kind = Kind::kUnknown;
  Labels labels;
  int64_t created_ns = 0;  // unix time in nanoseconds
  int64_t updated_ns = 0;
};

struct Mount {
  std::string type;
  std::string source;
  std::string target;
  std::vector<std::string> options;
};

struct Usage {
  int64_t size = 0;    // bytes this snapshot adds over its parent
  int64_t inodes = 0;  // inodes in use
};

}  // namespace thinsnap
