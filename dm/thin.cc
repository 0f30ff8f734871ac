#include "dm/thin.h"

#include <charconv>

namespace thinsnap::dm {
namespace {

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\n')) ++i;
    const size_t b = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\n') ++i;
    if (i > b) out.push_back(line.substr(b, i - b));
  }
  return out;
}

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// "used/total".
bool ParseRatio(std::string_view s, uint64_t* used, uint64_t* total) {
  const size_t slash = s.find('/');
  if (slash == std::string_view::npos) return false;
  return ParseU64(s.substr(0, slash), used) && ParseU64(s.substr(slash + 1), total);
}

Status Malformed(const char* what, std::string_view line) {
  return Status::InvalidArgument(std::string("malformed ") + what + " line: '" + std::string(line) +
                                 "'");
}

// Checks "<start> <length> <type>" and returns the fields after it.
bool SplitHeader(std::string_view line, std::string_view type, uint64_t* length,
                 std::vector<std::string_view>* rest) {
  std::vector<std::string_view> f = Fields(line);
  uint64_t start = 0;
  if (f.size() < 3 || !ParseU64(f[0], &start) || !ParseU64(f[1], length) || f[2] != type) {
    return false;
  }
  rest->assign(f.begin() + 3, f.end());
  return true;
}

}  // namespace

Target ThinPoolTable::ToTarget() const {
  std::string params = metadata_dev.ToString() + " " + data_dev.ToString() + " " +
                       std::to_string(block_sectors) + " " + std::to_string(low_water_blocks) +
                       " " + std::to_string(features.size());
  for (const std::string& f : features) params += " " + f;
  return Target{0, length_sectors, "thin-pool", params};
}

Result<ThinPoolTable> ParseThinPoolTable(std::string_view line) {
  ThinPoolTable t;
  std::vector<std::string_view> f;
  uint64_t nfeatures = 0;
  if (!SplitHeader(line, "thin-pool", &t.length_sectors, &f) || f.size() < 5 ||
      !ParseU64(f[2], &t.block_sectors) || !ParseU64(f[3], &t.low_water_blocks) ||
      !ParseU64(f[4], &nfeatures) || f.size() != 5 + nfeatures) {
    return Malformed("thin-pool table", line);
  }
  auto meta = ParseDevNum(f[0]);
  auto data = ParseDevNum(f[1]);
  if (!meta.ok() || !data.ok()) return Malformed("thin-pool table", line);
  t.metadata_dev = *meta;
  t.data_dev = *data;
  for (size_t i = 5; i < f.size(); ++i) t.features.emplace_back(f[i]);
  return t;
}

Target ThinTarget(uint64_t length_sectors, DevNum pool, uint32_t thin_id) {
  return Target{0, length_sectors, "thin", pool.ToString() + " " + std::to_string(thin_id)};
}

Result<ThinPoolStatus> ParseThinPoolStatus(std::string_view line) {
  ThinPoolStatus s;
  std::vector<std::string_view> f;
  uint64_t length = 0;
  if (!SplitHeader(line, "thin-pool", &length, &f)) return Malformed("thin-pool status", line);
  if (f.size() == 1 && f[0] == "Fail") {
    s.failed = true;
    return s;
  }
  // Older kernels stop after needs_check; newer ones add the metadata
  // low-water mark.
  if (f.size() != 8 && f.size() != 9) return Malformed("thin-pool status", line);
  if (!ParseU64(f[0], &s.transaction_id) ||
      !ParseRatio(f[1], &s.meta_used_blocks, &s.meta_total_blocks) ||
      !ParseRatio(f[2], &s.data_used_blocks, &s.data_total_blocks)) {
    return Malformed("thin-pool status", line);
  }
  if (f[3] != "-") {
    uint64_t root = 0;
    if (!ParseU64(f[3], &root)) return Malformed("thin-pool status", line);
    s.held_metadata_root = root;
  }
  if (f[4] == "rw") {
    s.mode = PoolMode::kReadWrite;
  } else if (f[4] == "ro") {
    s.mode = PoolMode::kReadOnly;
  } else if (f[4] == "out_of_data_space") {
    s.mode = PoolMode::kOutOfDataSpace;
  } else {
    return Malformed("thin-pool status", line);
  }
  if (f[5] == "discard_passdown") {
    s.discard = DiscardMode::kPassdown;
  } else if (f[5] == "no_discard_passdown") {
    s.discard = DiscardMode::kNoPassdown;
  } else if (f[5] == "ignore_discard") {
    s.discard = DiscardMode::kIgnore;
  } else {
    return Malformed("thin-pool status", line);
  }
  if (f[6] == "error_if_no_space") {
    s.error_if_no_space = true;
  } else if (f[6] != "queue_if_no_space") {
    return Malformed("thin-pool status", line);
  }
  if (f[7] == "needs_check") {
    s.needs_check = true;
  } else if (f[7] != "-") {
    return Malformed("thin-pool status", line);
  }
  if (f.size() == 9) {
    uint64_t low_water = 0;
    if (!ParseU64(f[8], &low_water)) return Malformed("thin-pool status", line);
    s.metadata_low_water = low_water;
  }
  return s;
}

Result<ThinStatus> ParseThinStatus(std::string_view line) {
  ThinStatus s;
  std::vector<std::string_view> f;
  uint64_t length = 0;
  if (!SplitHeader(line, "thin", &length, &f)) return Malformed("thin status", line);
  if (f.size() == 1 && f[0] == "Fail") {
    s.failed = true;
    return s;
  }
  if (f.size() != 2 || !ParseU64(f[0], &s.mapped_sectors)) return Malformed("thin status", line);
  if (f[1] != "-") {
    uint64_t highest = 0;
    if (!ParseU64(f[1], &highest)) return Malformed("thin status", line);
    s.highest_mapped_sector = highest;
  }
  return s;
}

Status SendCreateThin(const std::string& pool, uint32_t id) {
  return SendMessage(pool, "create_thin " + std::to_string(id));
}

Status SendCreateSnap(const std::string& pool, uint32_t id, uint32_t origin) {
  return SendMessage(pool, "create_snap " + std::to_string(id) + " " + std::to_string(origin));
}

Status SendDelete(const std::string& pool, uint32_t id) {
  return SendMessage(pool, "delete " + std::to_string(id));
}

Status SendReserveMetadataSnap(const std::string& pool) {
  return SendMessage(pool, "reserve_metadata_snap");
}

Status SendReleaseMetadataSnap(const std::string& pool) {
  return SendMessage(pool, "release_metadata_snap");
}

}  // namespace thinsnap::dm
