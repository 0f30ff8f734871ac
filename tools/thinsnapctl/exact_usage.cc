#include "exact_usage.h"

#include <filesystem>
#include <iostream>
#include <map>
#include <vector>

#include "json.h"
#include "metadata/store.h"
#include "pool/dm_pool.h"

namespace thinsnap::ctl {
namespace {

constexpr int kExitProblems = 1;

int Report(const Status& st) {
  std::cerr << "thinsnapctl: " << st.ToString() << "\n";
  return kExitProblems;
}

struct Row {
  std::string key, kind;
  uint64_t exclusive = 0, mapped = 0;
};

}  // namespace

int ExactUsage(const std::string& root, const std::string& pool_name,
               const std::optional<std::string>& key, bool json) {
  const std::string db = root + "/metadata.db";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(db, ec)) {
    return Report(Status::NotFound("no thinsnap metadata at " + db + " (give --root)"));
  }
  auto store = Store::Open(db);
  if (!store.ok()) return Report(store.status().Annotate("open metadata"));
  auto pool = OpenDmPool(pool_name);
  if (!pool.ok()) return Report(pool.status().Annotate("open thin pool " + pool_name));
  auto usage = (*pool)->ListUsage();
  if (!usage.ok()) return Report(usage.status().Annotate("read pool metadata"));
  std::map<ThinId, ThinUsage> by_id;
  for (const ThinUsage& u : *usage) by_id[u.id] = u;

  std::vector<Row> rows;
  auto add = [&](const std::string& k, const std::string& kind, ThinId id) {
    auto it = by_id.find(id);
    rows.push_back({k, kind, it == by_id.end() ? 0 : it->second.exclusive_bytes,
                    it == by_id.end() ? 0 : it->second.mapped_bytes});
  };
  Status walked = (*store)->ForEach([&](const SnapshotRecord& r) {
    if (!key || r.info.name == *key) add(r.info.name, KindName(r.info.kind), r.thin_id);
    return Status::Ok();
  });
  if (!walked.ok()) return Report(walked);
  if (key && rows.empty()) return Report(Status::NotFound("snapshot " + *key + " not found"));
  if (!key) {
    auto base = (*store)->GetBase();
    if (!base.ok()) return Report(base.status());
    if (*base) add("(base device)", "base", (*base)->thin_id);
    // What sized Prepares snapshot (grown_origins.h): the grow's own writes.
    auto grown = (*store)->ListGrownOrigins();
    if (!grown.ok()) return Report(grown.status());
    for (const GrownOrigin& g : *grown) {
      add("(thin id " + std::to_string(g.origin_thin_id) + " grown to " +
              std::to_string(g.size_bytes) + " bytes)",
          "grown", g.thin_id);
    }
  }

  uint64_t total = 0;
  for (const Row& r : rows) total += r.exclusive;
  if (json) {
    toml::array arr;
    for (const Row& r : rows) {
      arr.push_back(toml::table{{"name", r.key},
                                {"kind", r.kind},
                                {"exclusive_bytes", JsonInt(r.exclusive)},
                                {"mapped_bytes", JsonInt(r.mapped)}});
    }
    PrintJson(
        toml::table{{"snapshots", std::move(arr)}, {"total_exclusive_bytes", JsonInt(total)}});
    return 0;
  }
  size_t width = 5;
  for (const Row& r : rows) width = std::max(width, r.key.size());
  auto line = [&](const std::string& k, const std::string& kind, const std::string& excl,
                  const std::string& mapped) {
    std::cout << k << std::string(width - k.size() + 2, ' ') << kind
              << std::string(kind.size() < 11 ? 11 - kind.size() : 1, ' ') << excl
              << std::string(excl.size() < 16 ? 16 - excl.size() : 1, ' ') << mapped << "\n";
  };
  line("KEY", "KIND", "EXCLUSIVE_BYTES", "MAPPED_BYTES");
  for (const Row& r : rows)
    line(r.key, r.kind, std::to_string(r.exclusive), std::to_string(r.mapped));
  if (!key) line("TOTAL", "", std::to_string(total), "");
  return 0;
}

}  // namespace thinsnap::ctl
