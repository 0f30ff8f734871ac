// Loop devices attached to backing files with the loop ioctls (no losetup).
//
// A LoopDevice owns its attachment: it is detached when the object dies unless
// Release() was called, so a half-done `pool create` rolls back by unwinding.
// Autoclear is left off on purpose: the pool must keep its loops across
// thinsnapctl exiting, until `pool destroy` detaches them.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "base/status.h"

namespace thinsnap::ctl {

class LoopDevice {
 public:
  // Attaches `file` (opened read-write) to a free loop device, asking for
  // direct I/O so pages are not cached twice. Direct I/O is a preference: the
  // kernel silently keeps buffered I/O where the backing filesystem cannot do
  // it (tmpfs, for one).
  static Result<LoopDevice> Attach(const std::string& file);

  LoopDevice(LoopDevice&& other) noexcept;
  LoopDevice& operator=(LoopDevice&&) = delete;
  LoopDevice(const LoopDevice&) = delete;
  ~LoopDevice();

  const std::string& path() const { return path_; }  // /dev/loopN
  // "major:minor", the form a device-mapper table takes.
  std::string DevNo() const;
  // Keeps the device attached after this object dies.
  void Release() { owned_ = false; }

 private:
  LoopDevice(std::string path, dev_t rdev) : path_(std::move(path)), rdev_(rdev) {}

  std::string path_;
  dev_t rdev_ = 0;
  bool owned_ = true;
};

// Detaches /dev/loopN. If the device is still open the kernel defers the
// detach to the last close (autoclear), which is what a teardown wants.
Status DetachLoop(const std::string& loop_path);

// The loop device currently backed by `file` (compared by device and inode),
// found through /sys/block/loop*/loop/backing_file; nullopt if none.
Result<std::optional<std::string>> FindLoopForFile(const std::string& file);

// The backing file of /dev/loopN as the kernel reports it; NotFound if the
// device is not a loop device or has no backing file.
Result<std::string> LoopBackingFile(const std::string& loop_name);

}  // namespace thinsnap::ctl
