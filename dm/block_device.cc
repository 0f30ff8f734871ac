#include "dm/block_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

namespace thinsnap::dm {

Result<ExclusiveDevice> ExclusiveDevice::Open(const std::string& path) {
  // O_EXCL on a block device fails with EBUSY while it is mounted.
  UniqueFd fd(open(path.c_str(), O_RDWR | O_EXCL | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + path + " exclusively");
  return ExclusiveDevice(path, std::move(fd));
}

Status ExclusiveDevice::Discard(const std::vector<ByteRange>& ranges) {
  int sector = 512;
  if (ioctl(fd_.get(), BLKSSZGET, &sector) != 0 || sector <= 0) sector = 512;
  const uint64_t unit = static_cast<uint64_t>(sector);
  for (const ByteRange& r : ranges) {
    const uint64_t begin = (r.offset + unit - 1) / unit * unit;
    const uint64_t end = (r.offset + r.length) / unit * unit;
    if (end <= begin) continue;
    uint64_t span[2] = {begin, end - begin};
    if (ioctl(fd_.get(), BLKDISCARD, span) != 0) {
      return Status::FromErrno(errno, "discard " + std::to_string(span[1]) + " bytes at " +
                                          std::to_string(begin) + " of " + path_);
    }
  }
  return Status::Ok();
}

Status ExclusiveDevice::Flush() {
  if (fsync(fd_.get()) != 0) return Status::FromErrno(errno, "flush " + path_);
  return Status::Ok();
}

Result<uint64_t> BlockDeviceBytes(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Status::FromErrno(errno, "open " + path);
  uint64_t bytes = 0;
  if (ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) {
    return Status::FromErrno(errno, "size of " + path);
  }
  return bytes;
}

}  // namespace thinsnap::dm
