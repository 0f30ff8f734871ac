#include "dm/device_mapper.h"

#include <fcntl.h>
#include <libdevmapper.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

namespace thinsnap::dm {
namespace {

// libdevmapper reports through a log callback; keep the last error of the
// calling thread so a failure that carries no errno still explains itself.
thread_local std::string t_last_error;

// libdevmapper queues /dev/mapper node operations on one process-wide list,
// _node_ops in libdm-common.c, with no lock: _stack_node_op appends to it
// (and, stacking a NODE_DEL, walks it and frees the entries of the same name),
// and update_devs/_pop_node_ops (dm_task_update_nodes, dm_udev_wait) performs
// and frees them all. Threads that reach it at once corrupt it (issue 15: a
// segfault inside libdevmapper under 16 clients). This file keeps every task
// off the list (SetUdevFlags, Resume) except one it cannot: a removal while
// DM_DISABLE_UDEV is set. Those run under g_node_ops_mu; see RunRemoveTask.
std::mutex g_node_ops_mu;
// libdevmapper's _udev_disabled, which dm_lib_init, its constructor, sets
// when DM_DISABLE_UDEV is in the environment (nothing here changes that
// variable later). Set by InitOnce, read-only after.
bool g_udev_disabled = false;
// Set while this thread holds g_node_ops_mu.
thread_local bool t_holds_node_ops_mu = false;
// Node operations libdevmapper stacked, counted from its debug log.
std::atomic<uint64_t> g_node_ops_stacked_guarded{0};
std::atomic<uint64_t> g_node_ops_stacked_unguarded{0};

// How _log_node_op (libdm-common.c) starts each line about the node-op list:
// "<device name>: <action> NODE_<type> ...", sent at debug level.
constexpr char kNodeOpFormat[] = "%s: %s NODE_";

void CaptureLog(int level, const char* /*file*/, int /*line*/, int /*dm_errno*/, const char* f,
                ...) {
  va_list ap;
  va_start(ap, f);
  if (std::strncmp(f, kNodeOpFormat, sizeof(kNodeOpFormat) - 1) == 0) {
    // Counted before any level filter: these are debug messages.
    (void)va_arg(ap, const char*);  // the device name
    if (std::strcmp(va_arg(ap, const char*), "Stacking") == 0) {
      (t_holds_node_ops_mu ? g_node_ops_stacked_guarded : g_node_ops_stacked_unguarded)
          .fetch_add(1, std::memory_order_relaxed);
    }
  } else if ((level & 0x0f) <= 3) {
    // log_level() of lvm2's log.h: 3 is error, 4 warning, higher is chatter;
    // the bits above are flags.
    char buf[512];
    vsnprintf(buf, sizeof(buf), f, ap);
    t_last_error = buf;
  }
  va_end(ap);
}

// One-time library setup, done before any task runs so that libdevmapper's
// lazily initialised globals are set by one thread and only read afterwards:
// the log callback; the udev probe (_semaphore_supported, _udev_running);
// through the first task, the control fd with the kernel version (_uname) and
// device-mapper's major (_dm_bitset/_dm_device_major) that _open_control
// looks up, and the driver version (dm_check_version, which also sets and
// clears _log_suppress). Two ints stay lazy, written by any thread that needs
// them, harmlessly: _ioctl_buffer_double_factor, bumped without a lock when a
// LIST, STATUS, TABLE or message answer overflows its buffer (a lost bump only
// costs one more retry with a bigger buffer), and _check_has_event_nr's
// cache, which the first non-empty LIST sets, to the same value in every
// thread.
void InitOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_udev_disabled = getenv("DM_DISABLE_UDEV") != nullptr;
    dm_log_with_errno_init(CaptureLog);
    // Never wait on udev cookies: in a guest without udev they never complete.
    dm_udev_set_sync_support(0);
    (void)dm_udev_get_sync_support();  // primes libdevmapper's lazy udev probe
    dm_hold_control_dev(1);
    if (dm_task* t = dm_task_create(DM_DEVICE_VERSION)) {
      (void)dm_task_run(t);
      dm_task_destroy(t);
    }
  });
}

struct TaskDeleter {
  void operator()(dm_task* t) const { dm_task_destroy(t); }
};
using TaskPtr = std::unique_ptr<dm_task, TaskDeleter>;

Status Fail(dm_task* t, const std::string& what) {
  int err = t ? dm_task_get_errno(t) : 0;
  if (err != 0) return Status::FromErrno(err, what);
  return Status::Internal(what + (t_last_error.empty() ? "" : ": " + t_last_error));
}

Result<TaskPtr> NewTask(int type, const std::string& name, const std::string& what) {
  InitOnce();
  t_last_error.clear();
  TaskPtr t(dm_task_create(type));
  if (!t) {
    // libdevmapper fails here when it cannot open /dev/mapper/control: the
    // kernel has no device-mapper, the node is missing, or we are not root.
    // Say which, and what to do, in one sentence.
    const int fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
    const int err = errno;
    if (fd >= 0) {
      close(fd);
      return Status::Internal(what + ": dm_task_create failed" +
                              (t_last_error.empty() ? "" : ": " + t_last_error));
    }
    if (err == EACCES || err == EPERM) {
      return Status::FailedPrecondition(
          "cannot open /dev/mapper/control (permission denied): device-mapper needs root");
    }
    return Status::Unavailable(
        std::string("device-mapper is not available (/dev/mapper/control: ") + std::strerror(err) +
        "): load it with `modprobe dm_thin_pool` and check that "
        "/dev/mapper/control exists");
  }
  if (!name.empty() && !dm_task_set_name(t.get(), name.c_str())) {
    return Fail(t.get(), what + ": bad name");
  }
  return t;
}

// Tells udev's dm rules to leave /dev/mapper alone for this task: this file
// makes and unlinks the nodes itself (EnsureNode, UnlinkNode). For a removal,
// DM_UDEV_DISABLE_LIBRARY_FALLBACK also keeps libdevmapper from queueing a
// NODE_DEL on its unlocked list (dm_task_run calls rm_dev_node only when
// !rely_on_udev), except under DM_DISABLE_UDEV, when _set_cookie_flags drops
// that flag (RunRemoveTask). For a resume the flags do not matter:
// dm_task_run queues a NODE_ADD whenever add_node is DM_ADD_NODE_ON_RESUME
// (Resume). Sync is off, so no cookie is ever waited on.
Status SetUdevFlags(dm_task* t, const std::string& what) {
  uint32_t cookie = 0;
  const uint16_t flags = DM_UDEV_DISABLE_DM_RULES_FLAG | DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG |
                         DM_UDEV_DISABLE_LIBRARY_FALLBACK;
  if (!dm_task_set_cookie(t, &cookie, flags)) return Fail(t, what + ": set udev flags");
  return Status::Ok();
}

Status AddTable(dm_task* t, const Table& table, const std::string& what) {
  for (const Target& target : table) {
    if (!dm_task_add_target(t, target.start_sector, target.length_sectors, target.type.c_str(),
                            target.params.c_str())) {
      return Fail(t, what + ": add target");
    }
  }
  return Status::Ok();
}

// Table and status ioctls on a missing device "succeed" in libdevmapper with
// exists == 0; report them as the ENXIO they are.
Result<Table> ReadTargets(dm_task* t, const std::string& what) {
  dm_info info;
  if (!dm_task_get_info(t, &info)) return Fail(t, what);
  if (!info.exists) return Status::FromErrno(ENXIO, what);
  Table table;
  void* next = nullptr;
  do {
    uint64_t start = 0, length = 0;
    char* type = nullptr;
    char* params = nullptr;
    next = dm_get_next_target(t, next, &start, &length, &type, &params);
    if (type == nullptr) break;  // no table at all
    table.push_back(Target{start, length, type, params ? params : ""});
  } while (next != nullptr);
  return table;
}

// Runs a task that makes libdevmapper queue a node operation on its unlocked
// list, holding g_node_ops_mu from the ioctl until dm_task_update_nodes has
// drained the list again.
bool RunNodeQueueingTask(dm_task* t) {
  std::lock_guard lock(g_node_ops_mu);
  t_holds_node_ops_mu = true;
  const bool ran = dm_task_run(t) != 0;
  dm_task_update_nodes();
  t_holds_node_ops_mu = false;
  return ran;
}

// Runs a DM_DEVICE_REMOVE task. Under DM_DISABLE_UDEV libdevmapper queues a
// NODE_DEL on its unlocked node-op list for every removal that succeeds,
// whatever the task's udev flags say (_set_cookie_flags clears
// DM_UDEV_DISABLE_LIBRARY_FALLBACK when _udev_disabled; dm_task_run then calls
// rm_dev_node). So such a removal holds g_node_ops_mu from the ioctl until
// dm_task_update_nodes has drained the list again: that NODE_DEL is the only
// entry, and it just unlinks /dev/mapper/<name> (_rm_dev_node), which
// UnlinkNode would do anyway. Without DM_DISABLE_UDEV, or for a task that
// names the device by uuid only (no name to queue), nothing is queued and no
// lock is taken.
bool RunRemoveTask(dm_task* t, bool by_name) {
  if (!g_udev_disabled || !by_name) return dm_task_run(t) != 0;
  return RunNodeQueueingTask(t);
}

// Removes /dev/mapper/<name> if it is a block node or a symlink.
void UnlinkNode(const std::string& name) {
  const std::string path = MapperPath(name);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && (S_ISBLK(st.st_mode) || S_ISLNK(st.st_mode))) {
    unlink(path.c_str());
  }
}

}  // namespace

// Udev was told to keep out (SetUdevFlags): this makes the nodes.
Status EnsureNode(const std::string& name, DevNum want) {
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  const std::string path = MapperPath(name);
  auto node = BlockDevNum(path);
  if (node.ok() && *node == want) return Status::Ok();
  UnlinkNode(name);
  const dev_t dev = makedev(want.major, want.minor);
  int rc = mknod(path.c_str(), S_IFBLK | 0640, dev);
  if (rc != 0 && errno == ENOENT) {
    // devtmpfs makes /dev/mapper with the control node; without it, here.
    (void)mkdir("/dev/mapper", 0755);
    rc = mknod(path.c_str(), S_IFBLK | 0640, dev);
  }
  if (rc != 0 && errno != EEXIST) return Status::FromErrno(errno, "mknod " + path);
  // EEXIST: a concurrent resume of the same device made it first; check it.
  node = BlockDevNum(path);
  if (!node.ok()) return node.status().Annotate("device node of " + name);
  if (!(*node == want)) {
    return Status::Internal(path + " is " + node->ToString() + ", not " + want.ToString());
  }
  return Status::Ok();
}

uint64_t NodeOpsStackedGuarded() {
  return g_node_ops_stacked_guarded.load(std::memory_order_relaxed);
}

uint64_t NodeOpsStackedUnguarded() {
  return g_node_ops_stacked_unguarded.load(std::memory_order_relaxed);
}

std::string DevNum::ToString() const { return std::to_string(major) + ":" + std::to_string(minor); }

Result<DevNum> ParseDevNum(std::string_view text) {
  const size_t colon = text.find(':');
  DevNum d;
  if (colon == std::string_view::npos) return Status::InvalidArgument("not major:minor");
  const char* b = text.data();
  const char* e = text.data() + text.size();
  auto r1 = std::from_chars(b, b + colon, d.major);
  auto r2 = std::from_chars(b + colon + 1, e, d.minor);
  if (colon == 0 || r1.ec != std::errc() || r1.ptr != b + colon || colon + 1 == text.size() ||
      r2.ec != std::errc() || r2.ptr != e) {
    return Status::InvalidArgument("not major:minor: '" + std::string(text) + "'");
  }
  return d;
}

Result<DevNum> BlockDevNum(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  if (!S_ISBLK(st.st_mode)) return Status::InvalidArgument(path + " is not a block device");
  return DevNum{major(st.st_rdev), minor(st.st_rdev)};
}

std::string Target::ToString() const {
  std::string s = std::to_string(start_sector) + " " + std::to_string(length_sectors) + " " + type;
  if (!params.empty()) s += " " + params;
  return s;
}

Status ValidateName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength || name.find('/') != std::string_view::npos ||
      name == "." || name == "..") {
    return Status::InvalidArgument("invalid device-mapper name '" + std::string(name) + "'");
  }
  return Status::Ok();
}

std::string MapperPath(const std::string& name) { return "/dev/mapper/" + name; }

Result<DeviceInfo> GetInfo(const std::string& name) {
  const std::string what = "dm info " + name;
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  auto t = NewTask(DM_DEVICE_INFO, name, what);
  if (!t.ok()) return t.status();
  if (!dm_task_run(t->get())) return Fail(t->get(), what);
  dm_info info;
  if (!dm_task_get_info(t->get(), &info)) return Fail(t->get(), what);
  DeviceInfo out;
  out.exists = info.exists != 0;
  if (!out.exists) return out;
  out.suspended = info.suspended != 0;
  out.read_only = info.read_only != 0;
  out.live_table = info.live_table != 0;
  out.inactive_table = info.inactive_table != 0;
  out.deferred_remove = info.deferred_remove != 0;
  out.open_count = info.open_count;
  out.target_count = static_cast<uint32_t>(info.target_count);
  out.dev = DevNum{info.major, info.minor};
  if (const char* uuid = dm_task_get_uuid(t->get())) out.uuid = uuid;
  return out;
}

Status Create(const std::string& name, const Table& table, const CreateOptions& options) {
  const std::string what = "dm create " + name;
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  // Create empty, load, resume (which makes the node).
  {
    auto t = NewTask(DM_DEVICE_CREATE, name, what);
    if (!t.ok()) return t.status();
    if (!options.uuid.empty() && !dm_task_set_uuid(t->get(), options.uuid.c_str())) {
      return Fail(t->get(), what + ": set uuid");
    }
    THINSNAP_RETURN_IF_ERROR(SetUdevFlags(t->get(), what));
    if (!dm_task_run(t->get())) {
      // The kernel answers EBUSY for a name that is taken; say what it means.
      if (dm_task_get_errno(t->get()) == EBUSY) {
        return Status::FromErrno(EEXIST, what + ": name in use");
      }
      return Fail(t->get(), what);
    }
  }
  Status st = Reload(name, table, options.read_only);
  if (st.ok()) st = Resume(name);
  if (!st.ok()) {
    // Leave nothing half-made behind; the original error is what matters.
    (void)Remove(name, RemoveOptions{.busy_retries = 5});
    return st.Annotate(what);
  }
  return Status::Ok();
}

Status Reload(const std::string& name, const Table& table, bool read_only) {
  const std::string what = "dm reload " + name;
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  auto t = NewTask(DM_DEVICE_RELOAD, name, what);
  if (!t.ok()) return t.status();
  if (read_only && !dm_task_set_ro(t->get())) return Fail(t->get(), what + ": set ro");
  THINSNAP_RETURN_IF_ERROR(AddTable(t->get(), table, what));
  if (!dm_task_run(t->get())) return Fail(t->get(), what);
  return Status::Ok();
}

Status Suspend(const std::string& name) {
  const std::string what = "dm suspend " + name;
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  auto t = NewTask(DM_DEVICE_SUSPEND, name, what);
  if (!t.ok()) return t.status();
  if (!dm_task_run(t->get())) return Fail(t->get(), what);
  return Status::Ok();
}

Status Resume(const std::string& name) {
  const std::string what = "dm resume " + name;
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  auto t = NewTask(DM_DEVICE_RESUME, name, what);
  if (!t.ok()) return t.status();
  THINSNAP_RETURN_IF_ERROR(SetUdevFlags(t->get(), what));
  // With the default, DM_ADD_NODE_ON_RESUME, dm_task_run queues a NODE_ADD on
  // libdevmapper's unlocked node-op list for every resume, whatever the udev
  // flags, and nothing here would ever drain it. ON_CREATE on a resume task
  // means "not on resume", and a CREATE task (which keeps the default) queues
  // nothing either. EnsureNode below makes the node instead.
  if (!dm_task_set_add_node(t->get(), DM_ADD_NODE_ON_CREATE)) {
    return Fail(t->get(), what + ": set add_node");
  }
  if (!dm_task_run(t->get())) return Fail(t->get(), what);
  // The resume answers with the device's info: its number, for the node.
  dm_info info;
  if (!dm_task_get_info(t->get(), &info)) return Fail(t->get(), what + ": info");
  if (!info.exists) return Status::NotFound(what + ": device vanished");
  return EnsureNode(name, DevNum{info.major, info.minor}).Annotate(what);
}

Status Remove(const std::string& name, const RemoveOptions& options) {
  const std::string what = "dm remove " + name;
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  // Under DM_DISABLE_UDEV, a removal addressed by name queues a NODE_DEL and
  // must take g_node_ops_mu; one addressed by uuid has no name for
  // dm_task_run to queue (it takes DEV_NAME of the task), so removals of
  // devices made with a uuid (thin devices are) run in parallel. The uuid is
  // read from the device itself: it names the same device as `name`.
  std::string uuid;
  if (g_udev_disabled) {
    auto info = GetInfo(name);
    if (!info.ok()) return info.status();
    if (!info->exists) {
      UnlinkNode(name);  // a stale node left by an earlier deferred removal
      return Status::FromErrno(ENXIO, what);
    }
    uuid = info->uuid;
  }
  for (int attempt = 0;; ++attempt) {
    const bool last = attempt >= options.busy_retries;
    const bool deferred = last && options.defer_if_busy;
    auto t = NewTask(DM_DEVICE_REMOVE, uuid.empty() ? name : "", what);
    if (!t.ok()) return t.status();
    if (!uuid.empty() && !dm_task_set_uuid(t->get(), uuid.c_str())) {
      return Fail(t->get(), what + ": set uuid");
    }
    // The node is unlinked here (see SetUdevFlags and RunRemoveTask).
    THINSNAP_RETURN_IF_ERROR(SetUdevFlags(t->get(), what));
    if (deferred && !dm_task_deferred_remove(t->get())) return Fail(t->get(), what);
    if (RunRemoveTask(t->get(), /*by_name=*/uuid.empty())) {
      if (!deferred) {
        UnlinkNode(name);
        return Status::Ok();
      }
      // With the deferred flag the kernel succeeds even while the device is
      // open; only a device that is really gone may lose its node.
      auto info = GetInfo(name);
      if (info.ok() && !info->exists) {
        UnlinkNode(name);
        return Status::Ok();
      }
      if (info.ok()) {
        // Under DM_DISABLE_UDEV the NODE_DEL that RunRemoveTask drained has
        // unlinked the node of this device, which stays until its last close.
        THINSNAP_RETURN_IF_ERROR(EnsureNode(name, info->dev).Annotate(what));
      }
      return Status::FromErrno(EBUSY, what + ": device is open, removal deferred");
    }
    const int err = dm_task_get_errno(t->get());
    if (err == ENXIO) UnlinkNode(name);  // a stale node left by an earlier deferred removal
    if (err != EBUSY || last) return Fail(t->get(), what);
    std::this_thread::sleep_for(options.retry_delay);
  }
}

Status Rename(const std::string& name, const std::string& new_name) {
  const std::string what = "dm rename " + name + " to " + new_name;
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  THINSNAP_RETURN_IF_ERROR(ValidateName(new_name));
  auto info = GetInfo(name);
  if (!info.ok()) return info.status();
  if (!info->exists) return Status::FromErrno(ENXIO, what);
  auto t = NewTask(DM_DEVICE_RENAME, name, what);
  if (!t.ok()) return t.status();
  if (!dm_task_set_newname(t->get(), new_name.c_str())) return Fail(t->get(), what);
  THINSNAP_RETURN_IF_ERROR(SetUdevFlags(t->get(), what));
  // The kernel finds the device by name only, and dm_task_run queues a
  // NODE_RENAME for every rename by name, whatever the udev flags; the lock
  // covers one quick ioctl. The drain renames the node only when
  // libdevmapper may fall back to making nodes; the node is checked below.
  if (!RunNodeQueueingTask(t->get())) {
    // The kernel answers EBUSY when the new name is taken.
    if (dm_task_get_errno(t->get()) == EBUSY) return Status::FromErrno(EEXIST, what);
    return Fail(t->get(), what);
  }
  UnlinkNode(name);
  return EnsureNode(new_name, info->dev).Annotate(what);
}

Result<Table> GetTable(const std::string& name) {
  const std::string what = "dm table " + name;
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  auto t = NewTask(DM_DEVICE_TABLE, name, what);
  if (!t.ok()) return t.status();
  if (!dm_task_run(t->get())) return Fail(t->get(), what);
  return ReadTargets(t->get(), what);
}

Result<Table> GetStatus(const std::string& name, bool no_flush) {
  const std::string what = "dm status " + name;
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  auto t = NewTask(DM_DEVICE_STATUS, name, what);
  if (!t.ok()) return t.status();
  if (no_flush && !dm_task_no_flush(t->get())) return Fail(t->get(), what + ": set noflush");
  if (!dm_task_run(t->get())) return Fail(t->get(), what);
  return ReadTargets(t->get(), what);
}

Status SendMessage(const std::string& name, const std::string& message) {
  const std::string what = "dm message '" + message + "' to " + name;
  THINSNAP_RETURN_IF_ERROR(ValidateName(name));
  auto t = NewTask(DM_DEVICE_TARGET_MSG, name, what);
  if (!t.ok()) return t.status();
  if (!dm_task_set_sector(t->get(), 0) || !dm_task_set_message(t->get(), message.c_str())) {
    return Fail(t->get(), what);
  }
  if (!dm_task_run(t->get())) return Fail(t->get(), what);
  return Status::Ok();
}

Result<std::vector<DeviceEntry>> ListDevices() {
  const std::string what = "dm list";
  auto t = NewTask(DM_DEVICE_LIST, "", what);
  if (!t.ok()) return t.status();
  if (!dm_task_run(t->get())) return Fail(t->get(), what);
  std::vector<DeviceEntry> out;
  dm_names* n = dm_task_get_names(t->get());
  if (n == nullptr) return Fail(t->get(), what);
  if (n->dev == 0) return out;  // the kernel marks an empty list with dev 0
  for (;;) {
    out.push_back(DeviceEntry{n->name, DevNum{major(n->dev), minor(n->dev)}});
    if (n->next == 0) break;
    n = reinterpret_cast<dm_names*>(reinterpret_cast<char*>(n) + n->next);
  }
  return out;
}

}  // namespace thinsnap::dm
