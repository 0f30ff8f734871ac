// Filesystem: formats a block device once and reads its inode usage.
//
// The snapshotter formats exactly one device per pool (the base device); every
// root snapshot is a thin snapshot of it, so mkfs never runs per layer.
//
// Format assumes the device reads as zeros (a fresh thin device does): it
// writes no inode tables or journal blocks and leaves the filesystem nothing
// to initialise in the background, so a mounted snapshot that nobody writes
// to costs no pool space.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "pool/byte_range.h"

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
  // Ranges of the unmounted filesystem on `device` that hold nothing it
  // needs: free blocks, and the journal's log area when the journal is empty
  // (after a clean unmount). Ranges are shrunk to multiples of `align_bytes`
  // (the pool's block: a thin device can only unmap whole blocks); what is
  // left empty is dropped.
  // A filesystem that was neither mounted nor written at or after
  // `changed_since` (unix seconds; its superblock's mount and write times say)
  // has freed nothing since, so it has no ranges to give: a new snapshot
  // starts with its parent's blocks, which the parent's commit trimmed. This
  // spares reading every bitmap of a layer nobody wrote.
  virtual Result<std::vector<ByteRange>> UnusedRanges(const std::string& device,
                                                      uint64_t align_bytes,
                                                      int64_t changed_since) = 0;
  // Grows the unmounted filesystem on `device` to fill the device, which was
  // enlarged from `old_bytes`: everything past `old_bytes` reads as zeros (a
  // thin device's new range), so, as Format, it leaves the kernel nothing to
  // initialise in the background.
  virtual Status Grow(const std::string& device, uint64_t old_bytes) = 0;
};

// ext2/3/4 through mkfs.<type> (argv, never a shell) and libext2fs.
// `mkfs_options` are extra arguments, e.g. {"-E", "lazy_itable_init=1"}.
std::unique_ptr<Filesystem> MakeExtFilesystem(std::string type,
                                              std::vector<std::string> mkfs_options);

}  // namespace thinsnap
