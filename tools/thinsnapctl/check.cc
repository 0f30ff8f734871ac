#include "check.h"

#include <fcntl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "json.h"
#include "metadata/store.h"
#include "pool/dm_pool.h"
#include "snapshot/reconciler.h"

namespace thinsnap::ctl {
namespace {

constexpr int kExitClean = 0;
constexpr int kExitProblems = 1;
constexpr int kExitUsage = 2;

// Holds <root>/thinsnapd.lock, the lock thinsnapd takes for its lifetime, so
// that a repair never runs behind a daemon's back (nor a daemon behind ours).
class RootLock {
 public:
  static Result<RootLock> Take(const std::string& root) {
    const std::string path = root + "/thinsnapd.lock";
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return Status::FromErrno(errno, "open " + path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      Status error = errno == EWOULDBLOCK
                         ? Status::FailedPrecondition(
                               "thinsnapd is running on " + root + " (it holds " + path +
                               "); stop it first, or run `thinsnapctl check` without --repair")
                         : Status::FromErrno(errno, "flock " + path);
      close(fd);
      return error;
    }
    return RootLock(fd);
  }
  RootLock(RootLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  RootLock& operator=(RootLock&&) = delete;
  ~RootLock() {
    if (fd_ >= 0) close(fd_);
  }

 private:
  explicit RootLock(int fd) : fd_(fd) {}
  int fd_;
};

toml::array IdArray(const std::vector<ThinId>& ids) {
  toml::array a;
  for (ThinId id : ids) a.push_back(static_cast<int64_t>(id));
  return a;
}

toml::array StringArray(const std::vector<std::string>& items) {
  toml::array a;
  for (const std::string& s : items) a.push_back(s);
  return a;
}

toml::table ReportJson(const ReconcileReport& r) {
  return toml::table{{"clean", r.clean()},
                     {"unfinished_creates", r.unfinished_creates},
                     {"unfinished_deletes", r.unfinished_deletes},
                     {"orphan_ids", IdArray(r.orphan_ids)},
                     {"stray_devices", IdArray(r.stray_devices)},
                     {"inactive_devices", IdArray(r.reactivated)},
                     {"lost", StringArray(r.lost)},
                     {"problems", StringArray(r.problems)}};
}

std::string IdText(const std::vector<ThinId>& ids) {
  std::string s;
  for (ThinId id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return "[" + s + "]";
}

// Everything one run found and did, for printing.
struct Outcome {
  std::optional<ReconcileReport> found;
  std::vector<std::string> dropped;          // lost snapshots dropped by --repair
  std::optional<ReconcileReport> remaining;  // after repairs
  std::vector<ThinId> pool_ids, metadata_ids;
  std::vector<std::string> errors;  // why the check could not run to the end
  bool clean() const {
    if (!errors.empty() || !found) return false;
    return remaining ? remaining->clean() : found->clean();
  }
};

// Drops snapshots whose thin device is gone, children first (the report
// lists them in creation order). Each becomes a finished-looking remove whose
// delete intent the next reconciler run completes.
void DropLost(Store& store, ReconcileReport& found, std::vector<std::string>* dropped) {
  for (auto it = found.lost.rbegin(); it != found.lost.rend(); ++it) {
    Result<Intent> intent = store.BeginRemove(*it);
    if (intent.ok()) {
      dropped->push_back(*it);
    } else {
      found.problems.push_back("cannot drop " + *it + ": " + intent.status().ToString());
    }
  }
}

Status Reconcile(const std::string& root, const std::string& pool_name, bool repair, bool drop_lost,
                 bool discard, Outcome* out) {
  auto store = Store::Open(root + "/metadata.db");
  if (!store.ok()) return store.status().Annotate("open metadata");
  auto pool = OpenDmPool(pool_name);
  if (!pool.ok()) return pool.status().Annotate("open thin pool " + pool_name);
  auto state = (*pool)->QueryStatus();
  if (!state.ok()) return state.status().Annotate("status of pool " + pool_name);
  // The pool's own checker must run first; listing or changing thin ids of a
  // damaged pool could make things worse.
  if (state->failed || state->needs_check || state->read_only) {
    return Status::FailedPrecondition("pool " + pool_name + " is " +
                                      (state->failed        ? "failed"
                                       : state->needs_check ? "flagged needs_check"
                                                            : "read-only") +
                                      "; repair it with thin_check/thin_repair first");
  }

  Reconciler reconciler(**store, **pool, ReclaimOptions{.discard = discard});
  auto found = reconciler.Run(repair);
  if (!found.ok()) return found.status().Annotate("reconcile");
  out->found = *found;
  if (repair) {
    if (drop_lost) DropLost(**store, *out->found, &out->dropped);
    if (!out->dropped.empty()) {
      auto finish = reconciler.Run(/*repair=*/true);
      if (!finish.ok()) return finish.status().Annotate("reconcile after dropping lost snapshots");
    }
    auto remaining = reconciler.Run(/*repair=*/false);
    if (!remaining.ok()) return remaining.status().Annotate("reconcile after repair");
    out->remaining = *remaining;
  }
  auto pool_ids = (*pool)->ListThinIds();
  if (!pool_ids.ok()) return pool_ids.status().Annotate("list thin ids");
  out->pool_ids = *pool_ids;
  auto metadata_ids = (*store)->ThinIdsInUse();
  if (!metadata_ids.ok()) return metadata_ids.status();
  out->metadata_ids = *metadata_ids;
  std::sort(out->metadata_ids.begin(), out->metadata_ids.end());
  return Status::Ok();
}

void PrintText(const std::string& command, const Outcome& out) {
  if (out.found) {
    std::cout << (out.remaining ? "found:     " : "state:     ") << out.found->Summary() << "\n";
  }
  if (!out.dropped.empty()) {
    std::cout << "dropped:   " << out.dropped.size() << " snapshot(s) without a thin device\n";
  }
  if (out.remaining) std::cout << "now:       " << out.remaining->Summary() << "\n";
  if (!out.errors.empty()) {
    for (const std::string& e : out.errors) std::cout << "error:     " << e << "\n";
    return;
  }
  std::cout << "pool ids:  " << IdText(out.pool_ids) << "\n"
            << "metadata:  " << IdText(out.metadata_ids) << "\n"
            << command << ": " << (out.clean() ? "clean" : "PROBLEMS REMAIN") << "\n";
}

void PrintJsonOutcome(const std::string& command, const std::string& root, const std::string& pool,
                      bool repair, const Outcome& out) {
  toml::table t{{"command", command},
                {"root", root},
                {"pool", pool},
                {"repair", repair},
                {"clean", out.clean()},
                {"errors", StringArray(out.errors)},
                {"dropped", StringArray(out.dropped)}};
  if (out.found) t.insert("found", ReportJson(*out.found));
  if (out.remaining) t.insert("remaining", ReportJson(*out.remaining));
  if (out.errors.empty()) {
    t.insert("pool_thin_ids", IdArray(out.pool_ids));
    t.insert("metadata_thin_ids", IdArray(out.metadata_ids));
  }
  PrintJson(t);
}

}  // namespace

CheckCommands::CheckCommands(CLI::App& app) {
  check_ = app.add_subcommand("check", "compare the metadata with the pool; --repair fixes it");
  check_->add_flag("--repair", repair_, "repair (needs thinsnapd stopped)");
  check_->add_flag("--json", json_, "print JSON");
  gc_ = app.add_subcommand("gc", "delete orphan thin ids and finish removals (thinsnapd stopped)");
  gc_->add_flag("--json", json_, "print JSON");
  for (CLI::App* cmd : {check_, gc_}) {
    cmd->add_option("--root", root_, "thinsnapd's root_dir (holds metadata.db)")->required();
    cmd->add_option("--pool", pool_, "device-mapper name of the thin pool")->required();
    cmd->add_flag("--no-discard", no_discard_,
                  "delete thin ids without discarding their blocks first (as discard_unused_blocks "
                  "= false)");
  }
}

int CheckCommands::Run() const {
  const std::string command = *gc_ ? "gc" : "check";
  const bool repair = *gc_ || repair_;
  // Opening a missing database would create one; a wrong --root is a usage error.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(root_ + "/metadata.db", ec)) {
    std::cerr << "thinsnapctl: NotFound: " << command << ": no thinsnap metadata at " << root_
              << "/metadata.db\n";
    return kExitUsage;
  }
  // Reconciler warnings go to stderr, so --json output stays parseable.
  spdlog::set_default_logger(spdlog::stderr_color_mt("thinsnapctl"));

  std::optional<RootLock> lock;
  if (repair) {
    auto taken = RootLock::Take(root_);
    if (!taken.ok()) {
      std::cerr << "thinsnapctl: " << taken.status().Annotate(command).ToString() << "\n";
      return kExitProblems;
    }
    lock.emplace(std::move(*taken));
  }

  Outcome out;
  Status st = Reconcile(root_, pool_, repair, /*drop_lost=*/check_->parsed(), !no_discard_, &out);
  if (!st.ok()) {
    out.errors.push_back(st.ToString());
    std::cerr << "thinsnapctl: " << st.Annotate(command).ToString() << "\n";
  }
  if (json_) {
    PrintJsonOutcome(command, root_, pool_, repair, out);
  } else {
    PrintText(command, out);
  }
  return out.clean() ? kExitClean : kExitProblems;
}

}  // namespace thinsnap::ctl
