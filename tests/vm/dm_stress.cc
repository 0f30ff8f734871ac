// dm_stress: many threads drive the dm/ wrapper against real dm-thin at once.
//
//   dm_stress [--threads 16] [--cycles 20] [--seed 1]
//   dm_stress --leak-selftest
//
// Built with AddressSanitizer and UBSan around its own copy of dm/
// (tests/vm/dm_stress.cmake) and run in the test VM by tests/vm/dm_stress.sh,
// once with DM_DISABLE_UDEV=1 and once without. It makes its own pool on loop
// devices over sparse files in /tmp (tmpfs in the guest).
//
// Each thread runs cycles on two thin ids of its own, where every result is
// predictable: create_thin, activate (dm::Create), suspend + create_snap +
// resume, activate the snapshot, remove the snapshot (plainly; with busy
// retries while another thread holds it open; or deferred until its last
// close), remove the origin, delete both. Twice a cycle each thread also races
// the others on a few shared ids (create_thin, create_snap of its origin,
// activate, suspend + resume, status, remove, delete), where NotFound,
// AlreadyExists, Unavailable and the kernel's EINVAL for a suspend or resume
// that lost a race are legitimate too. Any other result fails the run. Pool
// messages go one at a time, as in DmPool (see Stress::CreateThin); all else
// runs at once.
//
// Issue 15: libdevmapper keeps pending /dev/mapper node operations on one
// process-wide list without a lock; threads that reach it at once corrupt it.
// The run also fails unless, at the end, every node in /dev/mapper is the
// node of an existing device and every device has its node, and
// dm::NodeOpsStackedUnguarded() is 0. So that a 0 means something, the count
// under dm/'s lock must cover every operation that queues one: each rename,
// and, when DM_DISABLE_UDEV is set, each removal of a device without a dm
// uuid (those with one, as DmPool makes thin devices, are removed by uuid and
// queue nothing). It prints the number of operations.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/subprocess.h"
#include "dm/device_mapper.h"
#include "dm/thin.h"

// The sanitizers' settings belong to the test, not to whoever runs it: stop
// at the first report, with a failing exit status, and look for leaks.
extern "C" const char* __asan_default_options() {
  return "halt_on_error=1:abort_on_error=1:detect_leaks=1";
}
extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:abort_on_error=1:print_stacktrace=1";
}

namespace thinsnap {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kThinSectors = 64 * 1024 * 1024 / 512;
constexpr uint32_t kFirstSharedId = 100;
constexpr uint32_t kSharedIds = 4;
constexpr uint32_t kFirstOwnId = 1000;

// Everything the threads report, under one mutex (cheap next to an ioctl).
class Tally {
 public:
  // Counts one operation; records it as a failure unless its code is allowed.
  void Expect(const Status& st, std::initializer_list<Code> allowed, const std::string& what) {
    ops_.fetch_add(1, std::memory_order_relaxed);
    if (st.ok()) return;
    std::lock_guard lock(mu_);
    ++errors_[what + ": " + CodeName(st.code())];
    if (std::find(allowed.begin(), allowed.end(), st.code()) == allowed.end()) {
      failures_.push_back(what + ": " + st.ToString());
    }
  }
  // Counts one operation that must fail with `want`.
  void ExpectError(const Status& st, Code want, const std::string& what) {
    if (st.code() == want) {
      Expect(st, {want}, what);
    } else {
      Expect(Status::Internal("expected " + std::string(CodeName(want)) + ", got " +
                              (st.ok() ? std::string("OK") : st.ToString())),
             {want}, what);
    }
  }
  void Fail(const std::string& why) {
    std::lock_guard lock(mu_);
    failures_.push_back(why);
  }
  void Count(const std::string& what) {
    std::lock_guard lock(mu_);
    ++events_[what];
  }

  uint64_t ops() const { return ops_.load(); }
  // Prints what happened; true if nothing failed.
  bool Report() const {
    std::lock_guard lock(mu_);
    for (const auto& [what, n] : events_) std::printf("  %-44s %llu\n", what.c_str(), Ull(n));
    std::printf("expected errors:\n");
    for (const auto& [what, n] : errors_) std::printf("  %-44s %llu\n", what.c_str(), Ull(n));
    for (size_t i = 0; i < failures_.size() && i < 30; ++i) {
      std::printf("FAILURE: %s\n", failures_[i].c_str());
    }
    if (failures_.size() > 30) std::printf("... and %zu more failures\n", failures_.size() - 30);
    return failures_.empty();
  }

 private:
  static unsigned long long Ull(uint64_t n) { return n; }
  static const char* CodeName(Code code) {
    switch (code) {
      case Code::kNotFound:
        return "NotFound";
      case Code::kAlreadyExists:
        return "AlreadyExists";
      case Code::kUnavailable:
        return "Unavailable";
      case Code::kInvalidArgument:
        return "InvalidArgument";
      default:
        return "other";
    }
  }

  std::atomic<uint64_t> ops_{0};
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> errors_;
  std::map<std::string, uint64_t> events_;
  std::vector<std::string> failures_;
};

// Why /dev/mapper/<name> is not the node of the existing device `name`, or "".
std::string NodeProblem(const std::string& name) {
  auto info = dm::GetInfo(name);
  if (!info.ok()) return info.status().ToString();
  if (!info->exists) return name + " does not exist";
  auto node = dm::BlockDevNum(dm::MapperPath(name));
  if (!node.ok()) return "node of " + name + ": " + node.status().ToString();
  if (!(*node == info->dev)) {
    return dm::MapperPath(name) + " is " + node->ToString() + ", the device " +
           info->dev.ToString();
  }
  return "";
}

bool NodeExists(const std::string& name) {
  struct stat st;
  return lstat(dm::MapperPath(name).c_str(), &st) == 0;
}

class Stress {
 public:
  Stress(std::string pool, dm::DevNum pool_dev, Tally* tally)
      : pool_(std::move(pool)), pool_dev_(pool_dev), tally_(tally) {}

  void Worker(int thread, int cycles, uint64_t seed) {
    std::mt19937_64 rng(seed * 1000003 + static_cast<uint64_t>(thread));
    const uint32_t origin = kFirstOwnId + 2 * static_cast<uint32_t>(thread);
    const uint32_t snap = origin + 1;
    for (int c = 0; c < cycles; ++c) {
      Cycle(rng, origin, snap);
    }
  }

  std::string Name(uint32_t id) const { return pool_ + "-" + std::to_string(id); }
  // Removals that queue a node operation under DM_DISABLE_UDEV: by name.
  uint64_t removals() const { return removals_.load(); }
  uint64_t renames() const { return renames_.load(); }

  // Removes whatever the shared ids left behind.
  void CleanUpShared() {
    for (uint32_t k = 0; k < kSharedIds; ++k) {
      const uint32_t id = kFirstSharedId + k;
      tally_->Expect(Remove(Name(id), {.busy_retries = 20}), {Code::kNotFound},
                     "final remove shared");
      tally_->Expect(Delete(id), {Code::kNotFound}, "final delete shared");
    }
  }

 private:
  void CheckNode(const std::string& name, const char* when) {
    const std::string problem = NodeProblem(name);
    if (!problem.empty()) tally_->Fail(std::string(when) + ": " + problem);
  }
  void CheckNoNode(const std::string& name, const char* when) {
    if (NodeExists(name)) tally_->Fail(std::string(when) + ": " + name + " still has a node");
  }

  // dm::Remove, counting the removals the kernel accepted (a deferred one
  // included): under DM_DISABLE_UDEV each makes libdevmapper queue one node
  // operation.
  Status Remove(const std::string& name, const dm::RemoveOptions& options = {}) {
    auto info = dm::GetInfo(name);
    const bool by_uuid = info.ok() && info->exists && !info->uuid.empty();
    Status st = dm::Remove(name, options);
    if (!by_uuid && (st.ok() || (options.defer_if_busy && st.code() == Code::kUnavailable))) {
      removals_.fetch_add(1, std::memory_order_relaxed);
    }
    return st;
  }

  // Pool messages go one at a time, as in DmPool. The kernel runs concurrent
  // ones side by side, and they are not safe on one id: create_thin and
  // create_snap look for an existing id only in the committed device details
  // (__create_thin, __create_snap in dm-thin-metadata.c), and pool_message
  // commits after the operation has dropped its lock. A second create of an
  // id made but not yet committed overwrites its mapping tree, then fails
  // with EEXIST and removes it; seen here as "space map common: unable to
  // decrement block" and a pool gone read-only.
  Status CreateThin(uint32_t id) {
    std::lock_guard lock(messages_mu_);
    return dm::SendCreateThin(pool_, id);
  }
  Status CreateSnap(uint32_t id, uint32_t origin) {
    std::lock_guard lock(messages_mu_);
    return dm::SendCreateSnap(pool_, id, origin);
  }
  Status Delete(uint32_t id) {
    std::lock_guard lock(messages_mu_);
    return dm::SendDelete(pool_, id);
  }

  // Deletes a thin id whose device was just removed. After a deferred
  // removal the kernel drops the name (__hash_remove) before its work item
  // destroys the table and closes the thin device, so for a moment the id can
  // still be busy: retried briefly, and counted.
  Status DeleteRemoved(uint32_t id) {
    Status st = Delete(id);
    for (int i = 0; i < 500 && st.code() == Code::kUnavailable; ++i) {
      if (i == 0) tally_->Count("deletes retried while the removed device closed");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      st = Delete(id);
    }
    return st;
  }

  // A device with a dm uuid (as DmPool makes them) is removed by uuid.
  Status Activate(uint32_t id, bool with_uuid = false) {
    dm::CreateOptions options;
    if (with_uuid) options.uuid = "STRESS-" + Name(id);
    return dm::Create(Name(id), {dm::ThinTarget(kThinSectors, pool_dev_, id)}, options);
  }

  // One cycle on the thread's own ids: every result is known in advance.
  void Cycle(std::mt19937_64& rng, uint32_t origin, uint32_t snap) {
    const std::string o = Name(origin), s = Name(snap);
    tally_->Expect(CreateThin(origin), {}, "create_thin own");
    tally_->Expect(Activate(origin), {}, "activate own");
    CheckNode(o, "after activate");
    tally_->Expect(dm::Suspend(o), {}, "suspend own");
    tally_->Expect(CreateSnap(snap, origin), {}, "create_snap own");
    tally_->Expect(dm::Resume(o), {}, "resume own");
    CheckNode(o, "after resume");
    tally_->Expect(Activate(snap, /*with_uuid=*/true), {}, "activate own snapshot");
    CheckNode(s, "after activate");
    auto status = dm::GetStatus(s);
    tally_->Expect(status.status(), {}, "status own");
    auto table = dm::GetTable(o);
    tally_->Expect(table.status(), {}, "table own");
    if (table.ok() && table->size() != 1)
      tally_->Fail(o + ": table of " + std::to_string(table->size()) + " lines");
    if (rng() % 4 == 0) tally_->Expect(dm::ListDevices().status(), {}, "list");

    Shared(rng, origin);
    Shared(rng, origin);

    switch (rng() % 3) {
      case 0: {
        // Renamed, as the reclaim withdraws a device, then removed by uuid.
        const std::string hidden = s + "-w";
        tally_->Expect(dm::Rename(s, hidden), {}, "rename own");
        renames_.fetch_add(1, std::memory_order_relaxed);
        CheckNoNode(s, "after rename");
        CheckNode(hidden, "after rename");
        tally_->Expect(Remove(hidden), {}, "remove own renamed");
        CheckNoNode(hidden, "after remove");
        break;
      }
      case 1:
        RemoveWhileBusy(s);
        break;
      default:
        RemoveDeferred(s);
        break;
    }
    CheckNoNode(s, "after remove");
    tally_->Expect(Remove(o, {.busy_retries = 3}), {}, "remove own origin");
    CheckNoNode(o, "after remove");
    tally_->Expect(DeleteRemoved(snap), {}, "delete own");
    tally_->Expect(Delete(origin), {}, "delete own origin");
  }

  // Held open, the device refuses removal; with retries, the removal succeeds
  // once another thread closes it.
  void RemoveWhileBusy(const std::string& name) {
    const int fd = open(dm::MapperPath(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      tally_->Fail("open " + name + ": " + std::strerror(errno));
      return;
    }
    tally_->ExpectError(Remove(name), Code::kUnavailable, "remove own while open");
    std::thread closer([fd] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      close(fd);
    });
    tally_->Expect(Remove(name, {.busy_retries = 200, .retry_delay = std::chrono::milliseconds(2)}),
                   {}, "remove own with busy retries");
    closer.join();
    tally_->Count("removals after busy retries");
  }

  // A deferred removal keeps the device, and its node, until the last close;
  // the kernel then removes the device alone, and the next Remove() takes the
  // node it left.
  void RemoveDeferred(const std::string& name) {
    const int fd = open(dm::MapperPath(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      tally_->Fail("open " + name + ": " + std::strerror(errno));
      return;
    }
    tally_->ExpectError(Remove(name, {.defer_if_busy = true}), Code::kUnavailable,
                        "remove own deferred");
    auto info = dm::GetInfo(name);
    if (!info.ok() || !info->exists || !info->deferred_remove) {
      tally_->Fail(name + ": no deferred removal pending");
    }
    CheckNode(name, "deferred removal pending");
    close(fd);
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    for (;;) {
      info = dm::GetInfo(name);
      if (!info.ok() || !info->exists) break;
      if (Clock::now() > deadline) {
        tally_->Fail(name + ": deferred removal did not happen after its last close");
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    tally_->ExpectError(Remove(name), Code::kNotFound, "remove own after deferred removal");
    tally_->Count("deferred removals");
  }

  // One operation on a random shared id, racing the other threads. `origin`
  // is the thread's own active origin.
  void Shared(std::mt19937_64& rng, uint32_t origin) {
    const uint32_t id = kFirstSharedId + static_cast<uint32_t>(rng() % kSharedIds);
    const std::string name = Name(id);
    switch (rng() % 7) {
      case 0:
        tally_->Expect(CreateThin(id), {Code::kAlreadyExists}, "create_thin shared");
        break;
      case 1:
        tally_->Expect(dm::Suspend(Name(origin)), {}, "suspend own");
        tally_->Expect(CreateSnap(id, origin), {Code::kAlreadyExists}, "create_snap shared");
        tally_->Expect(dm::Resume(Name(origin)), {}, "resume own");
        break;
      case 2:
        // NotFound: no such thin id, or the device went away under us.
        // InvalidArgument: another thread resumed it between the kernel's
        // "is it suspended" check and its resume (dm_resume answers EINVAL).
        tally_->Expect(Activate(id),
                       {Code::kAlreadyExists, Code::kNotFound, Code::kInvalidArgument},
                       "activate shared");
        break;
      case 3: {
        // InvalidArgument: another thread suspended it between the kernel's
        // "is it suspended" check and its suspend (dm_suspend answers EINVAL).
        Status st = dm::Suspend(name);
        tally_->Expect(st, {Code::kNotFound, Code::kInvalidArgument}, "suspend shared");
        // Resuming, InvalidArgument: the device was still empty (its creator
        // had not loaded a table yet), or another thread resumed it first.
        if (st.ok()) {
          tally_->Expect(dm::Resume(name), {Code::kNotFound, Code::kInvalidArgument},
                         "resume shared");
        }
        break;
      }
      case 4:
        tally_->Expect(dm::GetStatus(name).status(), {Code::kNotFound}, "status shared");
        break;
      case 5:
        tally_->Expect(Remove(name, {.busy_retries = 2}), {Code::kNotFound, Code::kUnavailable},
                       "remove shared");
        break;
      default:
        // Unavailable: active.
        tally_->Expect(Delete(id), {Code::kNotFound, Code::kUnavailable}, "delete shared");
        break;
    }
  }

  const std::string pool_;
  const dm::DevNum pool_dev_;
  Tally* const tally_;
  std::atomic<uint64_t> removals_{0};
  std::atomic<uint64_t> renames_{0};
  std::mutex messages_mu_;
};

// Every device has its node and every node in /dev/mapper is the node of an
// existing device of its name.
void CheckAllNodes(Tally* tally) {
  auto devices = dm::ListDevices();
  if (!devices.ok()) {
    tally->Fail("list: " + devices.status().ToString());
    return;
  }
  std::map<std::string, dm::DevNum> by_name;
  for (const dm::DeviceEntry& d : *devices) {
    by_name[d.name] = d.dev;
    auto info = dm::GetInfo(d.name);
    if (info.ok() && info->exists && info->suspended) tally->Fail(d.name + " left suspended");
    auto node = dm::BlockDevNum(dm::MapperPath(d.name));
    if (!node.ok()) {
      tally->Fail("device " + d.name + " has no node: " + node.status().ToString());
    } else if (!(*node == d.dev)) {
      tally->Fail(dm::MapperPath(d.name) + " is " + node->ToString() + ", the device " +
                  d.dev.ToString());
    }
  }
  DIR* dir = opendir("/dev/mapper");
  if (dir == nullptr) {
    tally->Fail(std::string("opendir /dev/mapper: ") + std::strerror(errno));
    return;
  }
  while (dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || name == "control") continue;
    if (by_name.count(name) == 0) tally->Fail("stale node /dev/mapper/" + name);
  }
  closedir(dir);
}

std::string Run(const std::vector<std::string>& argv, Tally* tally) {
  auto out = RunCommand(argv);
  if (!out.ok() || out->exit_code != 0) {
    tally->Fail(argv[0] + " failed: " + (out.ok() ? out->err : out.status().ToString()));
    return "";
  }
  std::string s = out->out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// The pool and its loop devices, torn down (with thin_check) on destruction.
class Pool {
 public:
  explicit Pool(Tally* tally) : tally_(tally) {
    const std::string tag = std::to_string(getpid());
    name_ = "tsstress-" + tag;
    data_file_ = "/tmp/tsstress-data-" + tag;
    meta_file_ = "/tmp/tsstress-meta-" + tag;
    Run({"truncate", "-s", "1G", data_file_}, tally);
    Run({"truncate", "-s", "64M", meta_file_}, tally);
    // A fresh pool needs a zeroed metadata superblock (tmpfs reads zeros anyway).
    Run({"dd", "if=/dev/zero", "of=" + meta_file_, "bs=4096", "count=1", "conv=notrunc",
         "status=none"},
        tally);
    data_loop_ = Run({"losetup", "--find", "--show", data_file_}, tally);
    meta_loop_ = Run({"losetup", "--find", "--show", meta_file_}, tally);
    auto data = dm::BlockDevNum(data_loop_);
    auto meta = dm::BlockDevNum(meta_loop_);
    if (!data.ok() || !meta.ok()) {
      tally->Fail("no loop devices");
      return;
    }
    dm::ThinPoolTable table;
    table.length_sectors = 1024 * 1024 * 1024 / 512;
    table.metadata_dev = *meta;
    table.data_dev = *data;
    table.block_sectors = 128;
    table.low_water_blocks = 1024;
    table.features = {"skip_block_zeroing", "error_if_no_space"};
    Status st = dm::Create(name_, {table.ToTarget()});
    if (!st.ok()) {
      tally->Fail("create pool: " + st.ToString());
      return;
    }
    auto info = dm::GetInfo(name_);
    if (!info.ok() || !info->exists) {
      tally->Fail("pool vanished");
      return;
    }
    dev_ = info->dev;
    created_ = true;
  }

  ~Pool() {
    if (created_) {
      Status st = dm::Remove(name_, {.busy_retries = 20});
      if (!st.ok()) tally_->Fail("remove pool: " + st.ToString());
      if (NodeExists(name_)) tally_->Fail("the pool's node outlived it");
      auto check = RunCommand({"thin_check", meta_loop_});
      if (!check.ok() || check->exit_code != 0) {
        tally_->Fail("thin_check: " +
                     (check.ok() ? check->out + check->err : check.status().ToString()));
      }
    }
    for (const std::string& loop : {data_loop_, meta_loop_}) {
      if (!loop.empty()) Run({"losetup", "-d", loop}, tally_);
    }
    unlink(data_file_.c_str());
    unlink(meta_file_.c_str());
  }

  bool ok() const { return created_; }
  const std::string& name() const { return name_; }
  dm::DevNum dev() const { return dev_; }

 private:
  Tally* const tally_;
  std::string name_, data_file_, meta_file_, data_loop_, meta_loop_;
  dm::DevNum dev_;
  bool created_ = false;
};

// Leaks on purpose, so the caller can see LeakSanitizer work here.
[[gnu::noinline]] void Leak() {
  volatile char* p = new char[4096];
  p[0] = 1;
}

int Main(int threads, int cycles, uint64_t seed) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "dm_stress: needs root and device-mapper: run it through tests/vm/run\n");
    return 2;
  }
  const bool udev_disabled = getenv("DM_DISABLE_UDEV") != nullptr;
  std::printf("dm_stress: %d threads x %d cycles, seed %llu, DM_DISABLE_UDEV %s\n", threads, cycles,
              static_cast<unsigned long long>(seed), udev_disabled ? "set" : "unset");
  std::fflush(stdout);
  Tally tally;
  double seconds = 0;
  uint64_t removals = 0, renames = 0;
  {
    Pool pool(&tally);
    if (pool.ok()) {
      Stress stress(pool.name(), pool.dev(), &tally);
      const auto start = Clock::now();
      std::vector<std::thread> workers;
      for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&stress, t, cycles, seed] { stress.Worker(t, cycles, seed); });
      }
      for (std::thread& w : workers) w.join();
      seconds = std::chrono::duration<double>(Clock::now() - start).count();
      CheckAllNodes(&tally);
      stress.CleanUpShared();
      removals = stress.removals();
      renames = stress.renames();
    }
  }
  CheckAllNodes(&tally);
  const uint64_t unguarded = dm::NodeOpsStackedUnguarded();
  const uint64_t guarded = dm::NodeOpsStackedGuarded();
  if (unguarded != 0) {
    tally.Fail("libdevmapper stacked " + std::to_string(unguarded) +
               " node operations outside the lock (its list has no lock of its own)");
  }
  // The count is only worth something if it sees the operations that are
  // there: one per rename, and under DM_DISABLE_UDEV one per accepted removal
  // by name (the pool's and dm::Create's clean-ups add more).
  const uint64_t queueing = renames + (udev_disabled ? removals : 0);
  if (udev_disabled ? guarded < queueing : guarded != queueing) {
    tally.Fail("libdevmapper stacked " + std::to_string(guarded) +
               " node operations under the lock, for " + std::to_string(renames) + " renames and " +
               std::to_string(removals) + " removals by name, DM_DISABLE_UDEV " +
               (udev_disabled ? "set" : "unset"));
  }
  std::printf("events:\n");
  const bool ok = tally.Report();
  std::printf(
      "dm_stress: %llu operations in %.1f s (%.0f/s), %llu removals by name, %llu renames; "
      "libdevmapper node ops stacked: %llu under the lock, %llu unguarded\n",
      static_cast<unsigned long long>(tally.ops()), seconds,
      seconds > 0 ? static_cast<double>(tally.ops()) / seconds : 0.0,
      static_cast<unsigned long long>(removals), static_cast<unsigned long long>(renames),
      static_cast<unsigned long long>(guarded), static_cast<unsigned long long>(unguarded));
  std::printf("dm_stress: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace thinsnap

int main(int argc, char** argv) {
  CLI::App app{"dm_stress: concurrent dm/ operations on real dm-thin"};
  int threads = 16;
  int cycles = 20;
  uint64_t seed = 1;
  bool leak_selftest = false;
  app.add_option("--threads", threads, "worker threads")->check(CLI::Range(1, 64));
  app.add_option("--cycles", cycles, "cycles per thread")->check(CLI::Range(1, 100000));
  app.add_option("--seed", seed, "random seed");
  app.add_flag("--leak-selftest", leak_selftest,
               "leak 4 KiB and exit 0 (LeakSanitizer must fail it)");
  CLI11_PARSE(app, argc, argv);
  if (leak_selftest) {
    thinsnap::Leak();
    return 0;
  }
  return thinsnap::Main(threads, cycles, seed);
}
