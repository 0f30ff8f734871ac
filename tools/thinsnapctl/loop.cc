#include "loop.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/unique_fd.h"

namespace thinsnap::ctl {

namespace {

using Fd = UniqueFd;

// Binds `file_fd` to the loop device `loop_fd`. LOOP_CONFIGURE (Linux 5.8)
// does it in one step; older kernels need LOOP_SET_FD, then the status (for
// the file name losetup shows), then direct I/O.
Status Configure(int loop_fd, int file_fd, const std::string& file) {
  loop_config config;
  std::memset(&config, 0, sizeof(config));
  config.fd = static_cast<uint32_t>(file_fd);
  config.info.lo_flags = LO_FLAGS_DIRECT_IO;
  std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);
  if (ioctl(loop_fd, LOOP_CONFIGURE, &config) == 0) return Status::Ok();
  if (errno != EINVAL && errno != ENOTTY) return Status::FromErrno(errno, "LOOP_CONFIGURE");

  if (ioctl(loop_fd, LOOP_SET_FD, file_fd) != 0) return Status::FromErrno(errno, "LOOP_SET_FD");
  loop_info64 info;
  std::memset(&info, 0, sizeof(info));
  std::strncpy(reinterpret_cast<char*>(info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);
  if (ioctl(loop_fd, LOOP_SET_STATUS64, &info) != 0) {
    const int err = errno;
    ioctl(loop_fd, LOOP_CLR_FD, 0);
    return Status::FromErrno(err, "LOOP_SET_STATUS64");
  }
  // Not fatal: buffered I/O is correct, only slower.
  ioctl(loop_fd, LOOP_SET_DIRECT_IO, 1UL);
  return Status::Ok();
}

}  // namespace

Result<LoopDevice> LoopDevice::Attach(const std::string& file) {
  Fd file_fd(open(file.c_str(), O_RDWR | O_CLOEXEC));
  if (file_fd.get() < 0) return Status::FromErrno(errno, "open " + file);
  Fd control(open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (control.get() < 0) return Status::FromErrno(errno, "open /dev/loop-control");

  // Another process may grab the device between GET_FREE and configuring it
  // (EBUSY); asking again gives a different free device.
  constexpr int kAttempts = 8;
  Status last;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    const int index = ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (index < 0) return Status::FromErrno(errno, "LOOP_CTL_GET_FREE");
    const std::string path = "/dev/loop" + std::to_string(index);
    Fd loop_fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (loop_fd.get() < 0) return Status::FromErrno(errno, "open " + path);
    last = Configure(loop_fd.get(), file_fd.get(), file);
    if (last.ok()) {
      struct stat st;
      if (fstat(loop_fd.get(), &st) != 0) {
        const int err = errno;
        ioctl(loop_fd.get(), LOOP_CLR_FD, 0);
        return Status::FromErrno(err, "stat " + path);
      }
      return LoopDevice(path, st.st_rdev);
    }
    if (last.sys_errno() != EBUSY) break;
  }
  return last.Annotate("attaching " + file + " to a loop device");
}

LoopDevice::LoopDevice(LoopDevice&& other) noexcept
    : path_(std::move(other.path_)), rdev_(other.rdev_), owned_(other.owned_) {
  other.owned_ = false;
}

LoopDevice::~LoopDevice() {
  // Best effort: this only runs while unwinding a failed operation, whose
  // error is the one worth reporting.
  if (owned_) (void)DetachLoop(path_);
}

std::string LoopDevice::DevNo() const {
  return std::to_string(major(rdev_)) + ":" + std::to_string(minor(rdev_));
}

Status DetachLoop(const std::string& loop_path) {
  Fd fd(open(loop_path.c_str(), O_RDWR | O_CLOEXEC));
  if (fd.get() < 0) return Status::FromErrno(errno, "open " + loop_path);
  if (ioctl(fd.get(), LOOP_CLR_FD, 0) != 0) {
    return Status::FromErrno(errno, "detaching " + loop_path);
  }
  return Status::Ok();
}

Result<std::string> LoopBackingFile(const std::string& loop_name) {
  std::ifstream in("/sys/block/" + loop_name + "/loop/backing_file");
  std::string file;
  if (!in || !std::getline(in, file) || file.empty()) {
    return Status::NotFound(loop_name + " has no backing file");
  }
  return file;
}

Result<std::optional<std::string>> FindLoopForFile(const std::string& file) {
  struct stat want;
  if (stat(file.c_str(), &want) != 0) return Status::FromErrno(errno, "stat " + file);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/block", ec)) {
    const std::string name = entry.path().filename();
    if (name.rfind("loop", 0) != 0) continue;
    Result<std::string> backing = LoopBackingFile(name);
    if (!backing.ok()) continue;
    // The kernel's path may be stale (file renamed) or name a different
    // mount namespace; the open file's identity is authoritative, and
    // LOOP_GET_STATUS64 reports it as lo_device/lo_inode.
    Fd fd(open(("/dev/" + name).c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) continue;
    loop_info64 info;
    if (ioctl(fd.get(), LOOP_GET_STATUS64, &info) != 0) continue;
    if (info.lo_device == want.st_dev && info.lo_inode == want.st_ino) {
      return std::optional<std::string>("/dev/" + name);
    }
  }
  if (ec) return Status::FromErrno(ec.value(), "listing /sys/block");
  return std::optional<std::string>();
}

}  // namespace thinsnap::ctl
