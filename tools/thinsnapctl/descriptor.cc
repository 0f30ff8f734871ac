#include "descriptor.h"

#include <fcntl.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>

namespace thinsnap::ctl {

Status WriteDescriptor(const std::string& dir, const PoolDescriptor& desc) {
  toml::table table{
      {"name", desc.name},
      {"data_file", desc.data_file},
      {"meta_file", desc.meta_file},
      {"block_size", static_cast<int64_t>(desc.block_size)},
      {"low_water_mark", static_cast<int64_t>(desc.low_water_mark)},
  };
  std::ostringstream text;
  text << "# thinsnap loop-backed pool; written by `thinsnapctl pool create`\n" << table << "\n";
  const std::string body = text.str();

  const std::string path = dir + "/" + kDescriptorFile;
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "create " + tmp);
  size_t done = 0;
  while (done < body.size()) {
    const ssize_t n = write(fd, body.data() + done, body.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      unlink(tmp.c_str());
      return Status::FromErrno(err, "write " + tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return Status::FromErrno(err, "sync " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return Status::FromErrno(err, "rename " + tmp);
  }
  return Status::Ok();
}

Result<PoolDescriptor> ReadDescriptor(const std::string& dir) {
  const std::string path = dir + "/" + kDescriptorFile;
  if (access(path.c_str(), F_OK) != 0) {
    return Status::FromErrno(errno, path +
                                        ": no pool descriptor (was the pool created with "
                                        "`thinsnapctl pool create --loop --dir " +
                                        dir + "`?)");
  }
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(path + ": " + std::string(e.description()));
  }
  PoolDescriptor desc;
  const auto name = table["name"].value<std::string>();
  const auto data = table["data_file"].value<std::string>();
  const auto meta = table["meta_file"].value<std::string>();
  const auto block = table["block_size"].value<int64_t>();
  const auto low_water = table["low_water_mark"].value<int64_t>();
  if (!name || name->empty() || !data || !meta || !block || *block <= 0 || !low_water ||
      *low_water < 0) {
    return Status::InvalidArgument(path +
                                   ": needs name, data_file, meta_file, block_size > 0 and "
                                   "low_water_mark >= 0");
  }
  desc.name = *name;
  desc.data_file = *data;
  desc.meta_file = *meta;
  desc.block_size = static_cast<uint64_t>(*block);
  desc.low_water_mark = static_cast<uint64_t>(*low_water);
  return desc;
}

}  // namespace thinsnap::ctl
