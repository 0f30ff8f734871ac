// dm_floor_bench: the kernel's own cost for what thinsnap asks of dm-thin per
// Prepare, Commit and Remove, measured with libdevmapper alone (no thinsnap
// code), so that thinsnap's figures can be read against a floor taken in the
// same VM run. Needs root and a thin-pool (e.g. `thinsnapctl pool create --loop`):
//
//   dm_floor_bench --pool NAME [--samples 40] [--parallel 16] [--rounds 5]
//                  [--size-bytes N] [--out FILE]
//
// It makes one thin device as the origin (inactive, like a committed layer or
// the base device) and times, per sample:
//   prepare:    `create_snap <id> <origin>` + activate (create, load, resume);
//   flush:      fsync of the new device (a flush: the pool commits metadata);
//   deactivate: remove of the device;
//   delete:     `delete <id>`;
// and, per round, the wall time of `--parallel` prepares issued at once from
// as many threads, against single prepares interleaved with the rounds; and
// the floor of a reclaim: for a snapshot that wrote 4 MiB of its own, the
// discard of those 4 MiB, the remove of its device and `delete <id>`.
// Devices are activated without /dev/mapper nodes (no udev, no library
// fallback): the node is userspace bookkeeping, not the kernel's cost.
//
// Figures are medians, printed and, with --out, written as key=value lines in
// milliseconds for tests/bench/proxybench -floor. Nothing is judged; the
// program fails only if an operation does, and removes what it made.
#include <fcntl.h>
#include <libdevmapper.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "dm_floor_bench: FAIL: %s\n", what.c_str());
  std::exit(1);
}

void QuietLog(int level, const char* /*file*/, int /*line*/, int /*dm_errno*/, const char* f, ...) {
  if ((level & 0x7f) > 3) return;
  va_list ap;
  va_start(ap, f);
  std::fprintf(stderr, "libdevmapper: ");
  std::vfprintf(stderr, f, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
}

// One task of `type` on `name`, with udev and the library's node fallback off.
struct Task {
  Task(int type, const std::string& name) : t(dm_task_create(type)) {
    if (t == nullptr) Die("dm_task_create");
    if (!name.empty() && !dm_task_set_name(t, name.c_str())) Die("set name " + name);
  }
  ~Task() { dm_task_destroy(t); }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  void NoNodes() {
    uint32_t cookie = 0;
    const uint16_t flags = DM_UDEV_DISABLE_DM_RULES_FLAG | DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG |
                           DM_UDEV_DISABLE_LIBRARY_FALLBACK;
    if (!dm_task_set_cookie(t, &cookie, flags)) Die("set cookie");
  }
  void Run(const std::string& what) {
    if (!dm_task_run(t)) Die(what + ": " + std::strerror(dm_task_get_errno(t)));
  }
  dm_task* t;
};

class Floor {
 public:
  Floor(std::string pool, uint64_t size_bytes)
      : pool_(std::move(pool)), sectors_(size_bytes / 512) {
    Task info(DM_DEVICE_INFO, pool_);
    info.Run("info " + pool_);
    dm_info i;
    if (!dm_task_get_info(info.t, &i) || !i.exists) Die("pool " + pool_ + " does not exist");
    pool_dev_ = std::to_string(i.major) + ":" + std::to_string(i.minor);
  }

  void Message(const std::string& msg) {
    Task t(DM_DEVICE_TARGET_MSG, pool_);
    if (!dm_task_set_sector(t.t, 0) || !dm_task_set_message(t.t, msg.c_str())) Die("set message");
    t.Run("message " + msg);
  }

  std::string Name(uint32_t id) const { return pool_ + "-floor-" + std::to_string(id); }

  // create_snap + create/load/resume: what a Prepare needs from the kernel.
  void Prepare(uint32_t id, uint32_t origin) {
    Message("create_snap " + std::to_string(id) + " " + std::to_string(origin));
    Task t(DM_DEVICE_CREATE, Name(id));
    const std::string params = pool_dev_ + " " + std::to_string(id);
    if (!dm_task_add_target(t.t, 0, sectors_, "thin", params.c_str())) Die("add target");
    t.NoNodes();
    t.Run("create " + Name(id));
  }

  // The active device's node under /dev (devtmpfs), opened with `flags`.
  int Open(uint32_t id, int flags) {
    Task info(DM_DEVICE_INFO, Name(id));
    info.Run("info " + Name(id));
    dm_info i;
    if (!dm_task_get_info(info.t, &i) || !i.exists) Die(Name(id) + " is not active");
    const std::string node = "/dev/dm-" + std::to_string(i.minor);
    const int fd = open(node.c_str(), flags | O_CLOEXEC);
    if (fd < 0) Die("open " + node + ": " + std::strerror(errno));
    return fd;
  }

  // fsync of the device: a flush, so the pool commits metadata.
  void Flush(uint32_t id) {
    const int fd = Open(id, O_RDONLY);
    if (fsync(fd) != 0) Die("fsync " + Name(id) + ": " + std::strerror(errno));
    close(fd);
  }

  // Writes `bytes` of new data at offset 0 and flushes it.
  void Write(uint32_t id, uint64_t bytes) {
    const int fd = Open(id, O_WRONLY);
    const std::string block(1 << 20, 'w');
    for (uint64_t done = 0; done < bytes; done += block.size()) {
      if (pwrite(fd, block.data(), block.size(), static_cast<off_t>(done)) !=
          static_cast<ssize_t>(block.size()))
        Die("write " + Name(id) + ": " + std::strerror(errno));
    }
    if (fsync(fd) != 0) Die("fsync " + Name(id) + ": " + std::strerror(errno));
    close(fd);
  }

  // BLKDISCARD of [0, bytes).
  void Discard(uint32_t id, uint64_t bytes) {
    const int fd = Open(id, O_WRONLY);
    uint64_t range[2] = {0, bytes};
    if (ioctl(fd, BLKDISCARD, range) != 0) Die("discard " + Name(id) + ": " + std::strerror(errno));
    close(fd);
  }

  void Deactivate(uint32_t id) {
    Task t(DM_DEVICE_REMOVE, Name(id));
    t.NoNodes();
    t.Run("remove " + Name(id));
  }

  void Delete(uint32_t id) { Message("delete " + std::to_string(id)); }

 private:
  std::string pool_;
  std::string pool_dev_;
  uint64_t sectors_;
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[(v.size() - 1) / 2];
}

uint64_t ParseU64(const char* flag, const char* value) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v == 0)
    Die(std::string(flag) + " wants a positive number, not '" + value + "'");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string pool, out;
  uint64_t samples = 40, parallel = 16, rounds = 5, size_bytes = 10ull << 30;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc)
      Die("usage: dm_floor_bench --pool NAME [--samples N] [--parallel N] "
          "[--rounds N] [--size-bytes N] [--out FILE]");
    const char* value = argv[++i];
    if (flag == "--pool") {
      pool = value;
    } else if (flag == "--out") {
      out = value;
    } else if (flag == "--samples") {
      samples = ParseU64("--samples", value);
    } else if (flag == "--parallel") {
      parallel = ParseU64("--parallel", value);
    } else if (flag == "--rounds") {
      rounds = ParseU64("--rounds", value);
    } else if (flag == "--size-bytes") {
      size_bytes = ParseU64("--size-bytes", value);
      if (size_bytes % 512 != 0) Die("--size-bytes must be a multiple of 512");
    } else {
      Die("unknown flag " + flag);
    }
  }
  if (pool.empty()) Die("--pool is required");

  dm_log_with_errno_init(QuietLog);
  dm_udev_set_sync_support(0);
  Floor floor(pool, size_bytes);
  // Ids far above what a fresh thinsnap pool uses, so the two never meet.
  const uint32_t origin = 1u << 23;
  uint32_t next = origin + 1;
  floor.Message("create_thin " + std::to_string(origin));

  std::vector<double> prepare, flush, deactivate, del;
  for (uint64_t i = 0; i < samples + 3; ++i) {  // 3 unmeasured warm-up samples
    const uint32_t id = next++;
    const auto t0 = Clock::now();
    floor.Prepare(id, origin);
    const auto t1 = Clock::now();
    floor.Flush(id);
    const auto t2 = Clock::now();
    floor.Deactivate(id);
    const auto t3 = Clock::now();
    floor.Delete(id);
    const auto t4 = Clock::now();
    if (i < 3) continue;
    prepare.push_back(Ms(t1 - t0));
    flush.push_back(Ms(t2 - t1));
    deactivate.push_back(Ms(t3 - t2));
    del.push_back(Ms(t4 - t3));
  }

  // `parallel` prepares at once, each from its own thread, started together.
  auto burst = [&](uint64_t n) {
    std::vector<uint32_t> ids;
    for (uint64_t k = 0; k < n; ++k) ids.push_back(next++);
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (uint32_t id : ids) {
      threads.emplace_back([&, id] {
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        floor.Prepare(id, origin);
      });
    }
    const auto t0 = Clock::now();
    go.store(true, std::memory_order_release);
    for (auto& t : threads) t.join();
    const double wall = Ms(Clock::now() - t0);
    for (uint32_t id : ids) {
      floor.Deactivate(id);
      floor.Delete(id);
    }
    return wall;
  };
  // A reclaim's floor: a device that wrote 4 MiB of its own gives them back
  // (discard), goes (remove), and its id is deleted.
  constexpr uint64_t kOwnBytes = 4 << 20;
  std::vector<double> reclaim;
  for (uint64_t i = 0; i < samples + 3; ++i) {
    const uint32_t id = next++;
    floor.Prepare(id, origin);
    floor.Write(id, kOwnBytes);
    const auto t0 = Clock::now();
    floor.Discard(id, kOwnBytes);
    floor.Deactivate(id);
    floor.Delete(id);
    if (i >= 3) reclaim.push_back(Ms(Clock::now() - t0));
  }

  std::vector<double> one, many;
  burst(1);
  for (uint64_t r = 0; r < rounds; ++r) {
    for (int k = 0; k < 3; ++k) one.push_back(burst(1));
    many.push_back(burst(parallel));
  }
  floor.Delete(origin);

  const double p = Median(prepare), f = Median(flush), d = Median(deactivate), x = Median(del);
  const double o = Median(one), m = Median(many), r = Median(reclaim);
  std::printf("floor     == raw libdevmapper on pool %s, %llu samples, medians ==\n", pool.c_str(),
              static_cast<unsigned long long>(samples));
  std::printf(
      "floor     create_snap+activate %7.1f ms   flush %7.1f ms   deactivate %7.1f ms   "
      "delete %7.1f ms\n",
      p, f, d, x);
  std::printf(
      "floor     create_snap+activate  1: median %7.1f ms   %llu parallel: median wall "
      "%7.1f ms (%llu rounds)   ratio %.2fx\n",
      o, static_cast<unsigned long long>(parallel), m, static_cast<unsigned long long>(rounds),
      m / o);
  std::printf(
      "floor     reclaim of a device that wrote 4 MiB (discard 4 MiB + remove + delete): median "
      "%7.1f ms, %.1f devices/s\n",
      r, 1000 / r);
  if (!out.empty()) {
    std::ofstream file(out);
    file << "prepare_ms=" << p << "\nflush_ms=" << f << "\ndeactivate_ms=" << d
         << "\ndelete_ms=" << x << "\nparallel=" << parallel << "\nparallel_wall_ms=" << m
         << "\nreclaim_4mib_ms=" << r << "\n";
    if (!file.good()) Die("write " + out);
  }
  return 0;
}
