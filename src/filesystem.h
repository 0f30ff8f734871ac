// Filesystem: formats a block device once and reads its inode usage.
//
// The snapshotter formats exactly one device per pool (the base device); every
// root snapshot is a thin snapshot of it, so mkfs never runs per layer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace thinsnap {

class Filesystem {
 public:
  virtual ~Filesystem() = default;
  // The mount type reported to containerd, e.g. "ext4".
  virtual const std::string& type() const = 0;
  // Creates an empty filesystem on `device` whose root directory is empty
  // (no lost+found), so that a fresh snapshot looks like an empty directory.
  virtual Status Format(const std::string& device) = 0;
  // Inodes in use, read from the superblock without mounting.
  virtual Result<int64_t> InodesUsed(const std::string& device) = 0;
};

// ext2/3/4 through mkfs.<type> (argv, never a shell) and libext2fs.
// `mkfs_options` are extra arguments, e.g. {"-E", "lazy_itable_init=1"}.
std::unique_ptr<Filesystem> MakeExtFilesystem(std::string type,
                                              std::vector<std::string> mkfs_options);

}  // namespace thinsnap
