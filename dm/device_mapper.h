// device_mapper.h: a small, typed wrapper over libdevmapper's ioctl interface.
//
// One function per device-mapper operation. Failures come back as Status with
// the kernel's errno attached (Status::FromErrno), so callers can tell EEXIST,
// ENXIO, EBUSY, ENODATA, EINVAL and ENOSPC apart. libdevmapper types never
// appear here: src/ never includes libdevmapper.h.
//
// This layer knows nothing of thin pools or snapshots; tables are plain target
// lines. dm/thin.h builds and parses the thin-pool and thin ones.
//
// /dev/mapper nodes: the library never waits for udev. Udev sync is disabled
// and udev's dm rules are told to keep out, so /dev/mapper/<name> is created
// and removed by this library whether or not udev runs (a guest without udev
// would otherwise wait forever on a cookie or get no node at all): Resume()
// makes it with mknod, Remove() unlinks it. A deferred removal that completes
// later leaves a stale node behind (nobody is told); the next Remove() or
// Create() of that name cleans it up.
//
// Thread safety: every function may be called from many threads at once.
// libdevmapper keeps process-wide state without locks. What it sets lazily is
// set once, before the first task, but for two counters whose races are
// harmless (see InitOnce). Its list of pending node operations, which tasks
// change, is kept out of use: Resume() and Remove() tell libdevmapper to leave
// the nodes alone. One case libdevmapper does not let us keep out: with
// DM_DISABLE_UDEV in the environment it queues a node removal for every
// device removal by name, and a rename always queues a node rename. Remove()
// of a device that has a dm uuid addresses it by uuid instead (nothing to
// queue); other removals under DM_DISABLE_UDEV, and Rename(), hold a
// process-wide mutex around the ioctl and the draining of that list, so they
// run one at a time; nothing else ever takes it. NodeOpsStackedUnguarded() lets tests check that
// the list is never used outside that mutex. No call may still be running
// when the process exits: libdevmapper's destructor (dm_lib_exit) drains the
// list and closes the control fd.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace thinsnap::dm {

// A block device number, written "major:minor" in table lines.
struct DevNum {
  uint32_t major = 0;
  uint32_t minor = 0;

  std::string ToString() const;
  bool operator==(const DevNum&) const = default;
};

// Parses "major:minor". InvalidArgument on anything else.
Result<DevNum> ParseDevNum(std::string_view text);
// The device number of the block-device node at `path` (stat(2)).
// NotFound if missing, InvalidArgument if not a block device.
Result<DevNum> BlockDevNum(const std::string& path);

// One line of a table or of a status: "<start> <length> <type> <params>".
struct Target {
  uint64_t start_sector = 0;
  uint64_t length_sectors = 0;
  std::string type;    // e.g. "thin-pool"
  std::string params;  // the rest of the line, target-specific

  // The line as dmsetup prints it.
  std::string ToString() const;
};
using Table = std::vector<Target>;

// Longest valid device name (DM_NAME_LEN - 1).
inline constexpr size_t kMaxNameLength = 127;
// InvalidArgument unless `name` is non-empty, at most kMaxNameLength bytes,
// contains no '/', and is not "." or "..".
Status ValidateName(std::string_view name);
// "/dev/mapper/<name>".
std::string MapperPath(const std::string& name);

struct DeviceInfo {
  bool exists = false;  // the other fields are meaningful only if true
  bool suspended = false;
  bool read_only = false;
  bool live_table = false;
  bool inactive_table = false;
  bool deferred_remove = false;  // a deferred removal is pending
  int32_t open_count = 0;
  uint32_t target_count = 0;
  DevNum dev;
  std::string uuid;  // empty if the device has none
};

// Looks up `name`. A missing device is not an error: exists == false.
Result<DeviceInfo> GetInfo(const std::string& name);

struct CreateOptions {
  bool read_only = false;  // load the table read-only
  std::string uuid;        // optional dm uuid
};
// Creates `name`, loads `table` and resumes it, then makes /dev/mapper/<name>.
// AlreadyExists (EEXIST) if a device of that name exists. On failure nothing
// is left behind.
Status Create(const std::string& name, const Table& table, const CreateOptions& options = {});

// Loads `table` into the inactive slot of `name`; Resume() swaps it in.
Status Reload(const std::string& name, const Table& table, bool read_only = false);

// Suspends `name`, flushing outstanding I/O and freezing a mounted filesystem.
Status Suspend(const std::string& name);
// Resumes `name`, activating a reloaded table if there is one.
Status Resume(const std::string& name);

// Makes /dev/mapper/<name> the node of device `dev`, as libdevmapper would
// (root-owned, mode 0640), replacing a stale node of an earlier device of that
// name; a node that is already right is left alone. Create and Resume call it;
// it is public for a device whose node a crash kept from being made.
Status EnsureNode(const std::string& name, DevNum dev);

struct RemoveOptions {
  // How many more times to try after EBUSY, and how long to wait in between.
  int busy_retries = 0;
  std::chrono::milliseconds retry_delay{10};
  // If still EBUSY after the retries, ask the kernel to remove the device when
  // its last opener closes it. Remove() still returns Unavailable (EBUSY).
  bool defer_if_busy = false;
};
// Removes `name` and its /dev/mapper node. NotFound (ENXIO) if it does not
// exist; Unavailable (EBUSY) while it is open.
Status Remove(const std::string& name, const RemoveOptions& options = {});

// Renames the device `name` to `new_name` and moves its /dev/mapper node;
// anyone holding it open keeps it. NotFound if `name` does not exist,
// AlreadyExists if `new_name` does.
Status Rename(const std::string& name, const std::string& new_name);

// The live table of `name`.
Result<Table> GetTable(const std::string& name);
// The status lines of `name` (one per target). A thin-pool commits its
// metadata (a synchronous write) before answering unless `no_flush` is set;
// the counts it reports are current either way.
Result<Table> GetStatus(const std::string& name, bool no_flush = false);

// Sends a target message (sector 0) to `name`, e.g. "create_thin 7".
Status SendMessage(const std::string& name, const std::string& message);

struct DeviceEntry {
  std::string name;
  DevNum dev;
};
// Every device-mapper device on the system.
Result<std::vector<DeviceEntry>> ListDevices();

// How many /dev/mapper node operations libdevmapper has put on its
// process-wide, unlocked list of pending ones since this process started
// (counted from its debug log): by a Remove() holding the mutex above, which
// drains them at once (only while DM_DISABLE_UDEV is set), and anywhere else.
// Any of the second kind is a data race with every other thread using
// libdevmapper; tests check that it stays 0.
uint64_t NodeOpsStackedGuarded();
uint64_t NodeOpsStackedUnguarded();

}  // namespace thinsnap::dm
