#include "dm/pool_resize.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "base/unique_fd.h"
#include "dm/block_device.h"
#include "dm/device_mapper.h"
#include "dm/thin.h"

namespace thinsnap::dm {
namespace {

// The backing file of loop device `dev`, from sysfs.
Result<std::string> BackingFile(DevNum dev) {
  std::ifstream in("/sys/dev/block/" + dev.ToString() + "/loop/backing_file");
  std::string file;
  if (!in || !std::getline(in, file) || file.empty()) {
    return Status::FailedPrecondition("device " + dev.ToString() +
                                      " is not a loop device with a backing file; grow an LVM "
                                      "pool with lvextend");
  }
  return file;
}

// /dev/<name> of block device `dev`, from its uevent.
Result<std::string> NodeOf(DevNum dev) {
  std::ifstream uevent("/sys/dev/block/" + dev.ToString() + "/uevent");
  for (std::string line; std::getline(uevent, line);) {
    if (line.rfind("DEVNAME=", 0) == 0) return "/dev/" + line.substr(8);
  }
  return Status::NotFound("no device node for " + dev.ToString());
}

Result<ThinPoolTable> PoolTable(const std::string& pool) {
  auto table = GetTable(pool);
  if (!table.ok()) return table.status();
  if (table->size() != 1 || table->front().type != "thin-pool") {
    return Status::FailedPrecondition(pool + " is not a thin-pool");
  }
  return ParseThinPoolTable(table->front().ToString());
}

// Extends `file` to `bytes` (sparse) and has loop device `dev` take the size.
Status GrowLoop(DevNum dev, const std::string& file, uint64_t bytes) {
  if (truncate(file.c_str(), static_cast<off_t>(bytes)) != 0) {
    return Status::FromErrno(errno, "extend " + file);
  }
  auto node = NodeOf(dev);
  if (!node.ok()) return node.status();
  UniqueFd fd(open(node->c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + *node);
  if (ioctl(fd.get(), LOOP_SET_CAPACITY, 0) != 0) {
    return Status::FromErrno(errno, "set capacity of " + *node);
  }
  return Status::Ok();
}

}  // namespace

Result<LoopPoolSize> GetLoopPoolSize(const std::string& pool) {
  auto table = PoolTable(pool);
  if (!table.ok()) return table.status();
  LoopPoolSize size;
  auto data = BackingFile(table->data_dev);
  if (!data.ok()) return data.status();
  auto meta = BackingFile(table->metadata_dev);
  if (!meta.ok()) return meta.status();
  size.data_file = *data;
  size.meta_file = *meta;
  size.data_bytes = table->length_sectors * 512;
  auto meta_node = NodeOf(table->metadata_dev);
  if (!meta_node.ok()) return meta_node.status();
  auto meta_bytes = BlockDeviceBytes(*meta_node);
  if (!meta_bytes.ok()) return meta_bytes.status();
  size.meta_bytes = *meta_bytes;
  return size;
}

Result<LoopPoolSize> GrowLoopPool(const std::string& pool, uint64_t data_bytes,
                                  uint64_t meta_bytes) {
  auto table = PoolTable(pool);
  if (!table.ok()) return table.status();
  auto before = GetLoopPoolSize(pool);
  if (!before.ok()) return before.status();
  const uint64_t block = table->block_sectors * 512;
  if (data_bytes > before->data_bytes && data_bytes % block != 0) {
    return Status::InvalidArgument("data size " + std::to_string(data_bytes) +
                                   " is not a multiple of the pool's " + std::to_string(block) +
                                   "-byte block");
  }
  const bool grow_data = data_bytes > before->data_bytes;
  const bool grow_meta = meta_bytes > before->meta_bytes;
  if (!grow_data && !grow_meta) return before;
  if (grow_meta) {
    THINSNAP_RETURN_IF_ERROR(GrowLoop(table->metadata_dev, before->meta_file, meta_bytes));
  }
  if (grow_data) {
    THINSNAP_RETURN_IF_ERROR(GrowLoop(table->data_dev, before->data_file, data_bytes));
    table->length_sectors = data_bytes / 512;
  }
  // The same table (a longer one if the data grew): the resume makes the
  // kernel notice both devices' new sizes.
  THINSNAP_RETURN_IF_ERROR(Reload(pool, {table->ToTarget()}));
  Status st = Suspend(pool);
  Status resumed = Resume(pool);
  THINSNAP_RETURN_IF_ERROR(st.Annotate("suspend " + pool));
  THINSNAP_RETURN_IF_ERROR(resumed.Annotate("resume " + pool));
  return GetLoopPoolSize(pool);
}

}  // namespace thinsnap::dm
