// The ext2/3/4 Filesystem: mkfs.<type> for formatting, libext2fs for the rest,
// so neither Format nor InodesUsed ever needs to mount anything.
#include <arpa/inet.h>
#include <ext2fs/ext2fs.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/subprocess.h"
#include "fs/filesystem.h"

namespace thinsnap {
namespace {

constexpr char kLostAndFound[] = "lost+found";

// nodiscard skips a pointless discard of a freshly created thin device, and
// -m 0 because container layers have no use for blocks reserved for root.
const std::vector<std::string> kDefaultMkfsOptions = {"-E", "nodiscard", "-m", "0"};

// Always given to mke2fs, ahead of the configured -E options (so they can
// still override it): the device is a fresh thin device, which reads as
// zeros, so mke2fs may skip zeroing inode tables and the journal *and* mark
// every group's inode table as zeroed. Without the mark the kernel's
// ext4lazyinit thread zeroes them on every mount of every snapshot, writing
// about 16 MiB per GiB of filesystem into the pool (each snapshot its own
// copy, since the base device's tables are shared and copied on write).
constexpr char kPrezeroed[] = "assume_storage_prezeroed=1";

// mkfs of a device this module has just created should take seconds; the
// limit only guards against a wedged device hanging the snapshotter forever.
constexpr std::chrono::minutes kMkfsTimeout{5};

// libext2fs errors are either errno values or codes from its com_err table.
// The table is read directly so that libcom_err need not be linked for one
// lookup.
std::string Ext2Message(errcode_t err) {
  const error_table& t = et_ext2_error_table;
  if (err >= t.base && err < t.base + t.n_msgs) return t.msgs[err - t.base];
  if (err > 0 && err < 4096) return std::strerror(static_cast<int>(err));
  return "libext2fs error " + std::to_string(err);
}

Status Ext2Status(errcode_t err, const std::string& what) {
  if (err > 0 && err < 4096) return Status::FromErrno(static_cast<int>(err), what);
  std::string msg = what + ": " + Ext2Message(err);
  if (err == EXT2_ET_BAD_MAGIC || err == EXT2_ET_SB_CSUM_INVALID ||
      err == EXT2_ET_CORRUPT_SUPERBLOCK || err == EXT2_ET_UNSUPP_FEATURE ||
      err == EXT2_ET_RO_UNSUPP_FEATURE) {
    return Status::FailedPrecondition(msg);  // not (a usable) ext filesystem
  }
  return Status::Internal(msg);
}

// An open libext2fs handle. Close() writes back superblock, group descriptors
// and bitmaps; the destructor only frees, so an error path never flushes a
// half-finished change (a failed Format leaves a device to be reformatted).
class Ext2Handle {
 public:
  Ext2Handle() = default;
  Ext2Handle(const Ext2Handle&) = delete;
  Ext2Handle& operator=(const Ext2Handle&) = delete;
  ~Ext2Handle() {
    if (fs_ != nullptr) ext2fs_free(fs_);
  }

  Status Open(const std::string& device, int flags) {
    errcode_t err =
        ext2fs_open(device.c_str(), flags | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs_);
    if (err != 0) {
      fs_ = nullptr;
      return Ext2Status(err, "open ext filesystem on " + device);
    }
    return Status::Ok();
  }

  Status Close() {
    errcode_t err = ext2fs_close_free(&fs_);
    if (err != 0) return Ext2Status(err, "close ext filesystem");
    return Status::Ok();
  }

  ext2_filsys get() const { return fs_; }

 private:
  ext2_filsys fs_ = nullptr;
};

// Names in the root directory other than "." and "..".
Result<std::vector<std::string>> RootEntries(ext2_filsys fs) {
  std::vector<std::string> names;
  auto collect = [](ext2_dir_entry* dirent, int, int, char*, void* priv) -> int {
    const int len = ext2fs_dirent_name_len(dirent);
    std::string name(dirent->name, static_cast<size_t>(len));
    if (name != "." && name != "..") static_cast<std::vector<std::string>*>(priv)->push_back(name);
    return 0;
  };
  errcode_t err = ext2fs_dir_iterate(fs, EXT2_ROOT_INO, 0, nullptr, collect, &names);
  if (err != 0) return Ext2Status(err, "read root directory");
  return names;
}

// What `debugfs -w -R "rmdir lost+found"` does: unlink it from the root,
// release its blocks and inode, and drop the root's link count (for the
// ".." lost+found held). alloc_stats keep group descriptors, their checksums
// and the superblock totals consistent.
Status RemoveLostAndFound(ext2_filsys fs) {
  errcode_t err = ext2fs_read_bitmaps(fs);
  if (err != 0) return Ext2Status(err, "read bitmaps");

  ext2_ino_t ino = 0;
  err = ext2fs_lookup(fs, EXT2_ROOT_INO, kLostAndFound, sizeof(kLostAndFound) - 1, nullptr, &ino);
  if (err == EXT2_ET_FILE_NOT_FOUND) return Status::Ok();  // nothing to remove
  if (err != 0) return Ext2Status(err, "look up lost+found");

  ext2_inode inode;
  err = ext2fs_read_inode(fs, ino, &inode);
  if (err != 0) return Ext2Status(err, "read lost+found inode");
  if (!LINUX_S_ISDIR(inode.i_mode)) return Status::Internal("lost+found is not a directory");

  err = ext2fs_unlink(fs, EXT2_ROOT_INO, kLostAndFound, ino, 0);
  if (err != 0) return Ext2Status(err, "unlink lost+found");

  // ext2fs_punch rereads and rewrites the inode, so free blocks first, then
  // mark the inode deleted on top of what punch left.
  if (ext2fs_inode_has_valid_blocks2(fs, &inode)) {
    err = ext2fs_punch(fs, ino, &inode, nullptr, 0, ~0ULL);
    if (err != 0) return Ext2Status(err, "free lost+found blocks");
  }
  err = ext2fs_read_inode(fs, ino, &inode);
  if (err != 0) return Ext2Status(err, "reread lost+found inode");
  inode.i_links_count = 0;
  inode.i_dtime = static_cast<__u32>(fs->now != 0 ? fs->now : time(nullptr));
  err = ext2fs_write_inode(fs, ino, &inode);
  if (err != 0) return Ext2Status(err, "write lost+found inode");
  ext2fs_inode_alloc_stats2(fs, ino, -1, /*isdir=*/1);

  ext2_inode root;
  err = ext2fs_read_inode(fs, EXT2_ROOT_INO, &root);
  if (err != 0) return Ext2Status(err, "read root inode");
  if (root.i_links_count > 1) --root.i_links_count;
  err = ext2fs_write_inode(fs, EXT2_ROOT_INO, &root);
  if (err != 0) return Ext2Status(err, "write root inode");
  return Status::Ok();
}

// mkfs arguments: the configured options (or the defaults) with
// assume_storage_prezeroed=1 before and root_owner=0:0 after them, merged into
// the last -E, because mke2fs keeps only the last -E it is given.
std::vector<std::string> MkfsArgs(const std::string& type, const std::vector<std::string>& options,
                                  const std::string& device) {
  std::vector<std::string> args = {"mkfs." + type, "-F", "-q"};
  args.insert(args.end(), options.begin(), options.end());
  constexpr char kRootOwner[] = "root_owner=0:0";
  auto merge = [&](std::string& extended, size_t prefix) {
    extended =
        extended.substr(0, prefix) + kPrezeroed + "," + extended.substr(prefix) + "," + kRootOwner;
  };
  bool merged = false;
  for (size_t i = args.size(); i-- > 3 && !merged;) {
    if (args[i] == "-E" && i + 1 < args.size()) {
      merge(args[i + 1], 0);
      merged = true;
    } else if (args[i].starts_with("-E") && args[i].size() > 2) {
      merge(args[i], 2);
      merged = true;
    }
  }
  if (!merged) {
    args.push_back("-E");
    args.push_back(std::string(kPrezeroed) + "," + kRootOwner);
  }
  args.push_back(device);
  return args;
}

// resize2fs leaves the inode tables of the groups it adds for the kernel's
// ext4lazyinit to zero. Those past `fresh_from` bytes already read as zeros
// and are only marked so; any it placed below (inside the old, possibly
// written, range) are zeroed here first. The caller writes the descriptors.
Status MarkInodeTablesZeroed(ext2_filsys fs, uint64_t fresh_from) {
  if (!ext2fs_has_group_desc_csum(fs)) return Status::Ok();  // ext2/3: tables written in full
  for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
    if (ext2fs_bg_flags_test(fs, g, EXT2_BG_INODE_ZEROED)) continue;
    const blk64_t table = ext2fs_inode_table_loc(fs, g);
    if (table * fs->blocksize < fresh_from) {
      errcode_t err = ext2fs_zero_blocks2(fs, table, fs->inode_blocks_per_group, nullptr, nullptr);
      if (err != 0) return Ext2Status(err, "zero inode table of group " + std::to_string(g));
    }
    ext2fs_bg_flags_set(fs, g, EXT2_BG_INODE_ZEROED);
    ext2fs_group_desc_csum_set(fs, g);
  }
  ext2fs_mark_super_dirty(fs);
  return Status::Ok();
}

// Appends [first, first+count) blocks to `ranges`, merging with the last
// range when adjacent.
void AddBlocks(std::vector<ByteRange>& ranges, uint64_t block_bytes, blk64_t first, blk64_t count) {
  const uint64_t offset = first * block_bytes, length = count * block_bytes;
  if (!ranges.empty() && ranges.back().offset + ranges.back().length == offset) {
    ranges.back().length += length;
  } else {
    ranges.push_back({offset, length});
  }
}

// A superblock timestamp: 32 bits, and 8 more above them since ext4 1.43.
int64_t SuperblockTime(uint32_t low, uint8_t high) {
  return static_cast<int64_t>(low) | (static_cast<int64_t>(high) << 32);
}

// Runs of free blocks in the block bitmap. Groups still flagged BLOCK_UNINIT
// are skipped: no block of theirs was ever handed out since mkfs, by this
// filesystem or any snapshot it descends from, so their free blocks were never
// written and nothing there is mapped. Discarding them anyway costs the pool a
// pass over up to 128 MiB per group for nothing, on every commit.
Status FreeBlockRanges(ext2_filsys fs, std::vector<ByteRange>& out) {
  errcode_t err = ext2fs_read_block_bitmap(fs);
  if (err != 0) return Ext2Status(err, "read block bitmap");
  const bool flags_kept = ext2fs_has_group_desc_csum(fs);  // ext2/3 have no BLOCK_UNINIT
  for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
    if (flags_kept && ext2fs_bg_flags_test(fs, g, EXT2_BG_BLOCK_UNINIT)) continue;
    const blk64_t last = ext2fs_group_last_block2(fs, g);
    blk64_t pos = ext2fs_group_first_block2(fs, g);
    while (pos <= last) {
      blk64_t free_start = 0;
      if (ext2fs_find_first_zero_block_bitmap2(fs->block_map, pos, last, &free_start) != 0) break;
      blk64_t used = 0;
      blk64_t free_end = last + 1;
      if (free_start < last &&
          ext2fs_find_first_set_block_bitmap2(fs->block_map, free_start + 1, last, &used) == 0) {
        free_end = used;
      }
      AddBlocks(out, fs->blocksize, free_start, free_end - free_start);
      pos = free_end;
    }
  }
  return Status::Ok();
}

// The journal's log blocks (all but its superblock) if the journal holds no
// transactions: after a clean unmount jbd2 sets s_start to 0, and the next
// mount starts a new log without reading the old one.
Status IdleJournalRanges(ext2_filsys fs, std::vector<ByteRange>& out) {
  if (!ext2fs_has_feature_journal(fs->super) || fs->super->s_journal_inum == 0 ||
      ext2fs_has_feature_journal_needs_recovery(fs->super)) {
    return Status::Ok();
  }
  const ext2_ino_t ino = fs->super->s_journal_inum;
  blk64_t sb_block = 0;
  errcode_t err = ext2fs_bmap2(fs, ino, nullptr, nullptr, 0, 0, nullptr, &sb_block);
  if (err != 0) return Ext2Status(err, "map journal superblock");
  std::vector<char> buf(fs->blocksize);
  err = io_channel_read_blk64(fs->io, sb_block, 1, buf.data());
  if (err != 0) return Ext2Status(err, "read journal superblock");
  // jbd2's on-disk superblock is big-endian: h_magic at byte 0, s_start (the
  // first block of the log, 0 when the log is empty) at byte 28. libext2fs
  // does not install the jbd2 header that names them.
  constexpr uint32_t kJbd2Magic = 0xC03B3998;
  constexpr size_t kMagicOffset = 0, kStartOffset = 28;
  auto be32 = [&](size_t offset) {
    uint32_t v;
    std::memcpy(&v, buf.data() + offset, sizeof(v));
    return ntohl(v);
  };
  if (be32(kMagicOffset) != kJbd2Magic || be32(kStartOffset) != 0) return Status::Ok();

  struct Walk {
    ext2_filsys fs;
    std::vector<ByteRange>* out;
  } walk{fs, &out};
  auto visit = [](ext2_filsys f, blk64_t* block, e2_blkcnt_t logical, blk64_t, int,
                  void* priv) -> int {
    if (logical > 0) AddBlocks(*static_cast<Walk*>(priv)->out, f->blocksize, *block, 1);
    return 0;
  };
  err = ext2fs_block_iterate3(fs, ino, BLOCK_FLAG_DATA_ONLY | BLOCK_FLAG_READ_ONLY, nullptr, visit,
                              &walk);
  if (err != 0) return Ext2Status(err, "walk journal blocks");
  return Status::Ok();
}

// Shrinks each range to whole `align` units and drops the empty ones.
std::vector<ByteRange> AlignInward(const std::vector<ByteRange>& ranges, uint64_t align) {
  std::vector<ByteRange> out;
  for (const ByteRange& r : ranges) {
    const uint64_t begin = (r.offset + align - 1) / align * align;
    const uint64_t end = (r.offset + r.length) / align * align;
    if (end > begin) out.push_back({begin, end - begin});
  }
  return out;
}

class ExtFilesystem : public Filesystem {
 public:
  ExtFilesystem(std::string type, std::vector<std::string> mkfs_options)
      : type_(std::move(type)),
        mkfs_options_(mkfs_options.empty() ? kDefaultMkfsOptions : std::move(mkfs_options)) {}

  const std::string& type() const override { return type_; }

  Status Format(const std::string& device) override {
    if (type_ != "ext2" && type_ != "ext3" && type_ != "ext4") {
      return Status::InvalidArgument("not an ext filesystem type: " + type_);
    }
    RunOptions opts;
    opts.timeout = kMkfsTimeout;
    THINSNAP_RETURN_IF_ERROR(RunChecked(MkfsArgs(type_, mkfs_options_, device), opts));

    {
      Ext2Handle fs;
      THINSNAP_RETURN_IF_ERROR(fs.Open(device, EXT2_FLAG_RW));
      THINSNAP_RETURN_IF_ERROR(RemoveLostAndFound(fs.get()).Annotate("format " + device));
      THINSNAP_RETURN_IF_ERROR(fs.Close());
    }

    // Reopen from disk: proves the change was written, not just cached.
    Ext2Handle check;
    THINSNAP_RETURN_IF_ERROR(check.Open(device, 0));
    Result<std::vector<std::string>> entries = RootEntries(check.get());
    if (!entries.ok()) return entries.status();
    if (!entries->empty()) {
      return Status::Internal("format " + device + ": root directory not empty, has \"" +
                              entries->front() + "\"");
    }
    return Status::Ok();
  }

  Result<int64_t> InodesUsed(const std::string& device) override {
    Ext2Handle fs;
    // Checksums are not verified: the device may be live, and a count that is
    // briefly off beats failing a Usage call over a torn descriptor read.
    THINSNAP_RETURN_IF_ERROR(fs.Open(device, EXT2_FLAG_IGNORE_CSUM_ERRORS));
    ext2_filsys f = fs.get();
    // Sum the group descriptors instead of reading s_free_inodes_count: ext4
    // journals descriptor updates with every allocation but refreshes the
    // superblock total only when it writes the superblock (unmount, freeze),
    // so on a mounted filesystem the descriptors are the fresher source. It is
    // also what e2fsck trusts. After a freeze (dm suspend) both agree.
    int64_t free_inodes = 0;
    for (dgrp_t g = 0; g < f->group_desc_count; ++g)
      free_inodes += ext2fs_bg_free_inodes_count(f, g);
    const int64_t total = f->super->s_inodes_count;
    if (free_inodes > total) {
      return Status::Internal("inconsistent ext filesystem on " + device + ": " +
                              std::to_string(free_inodes) + " free of " + std::to_string(total) +
                              " inodes");
    }
    return total - free_inodes;
  }

  Status Grow(const std::string& device, uint64_t old_bytes) override {
    RunOptions opts;
    opts.timeout = kMkfsTimeout;
    // -f: the filesystem was cleanly unmounted (a committed layer, or the
    // never-mounted base), but resize2fs would still ask for an e2fsck first.
    THINSNAP_RETURN_IF_ERROR(RunChecked({"resize2fs", "-f", device}, opts));
    Ext2Handle fs;
    THINSNAP_RETURN_IF_ERROR(fs.Open(device, EXT2_FLAG_RW));
    THINSNAP_RETURN_IF_ERROR(MarkInodeTablesZeroed(fs.get(), old_bytes).Annotate("grow " + device));
    return fs.Close();
  }

  Result<std::vector<ByteRange>> UnusedRanges(const std::string& device, uint64_t align_bytes,
                                              int64_t changed_since) override {
    if (align_bytes == 0) return Status::InvalidArgument("alignment must be positive");
    Ext2Handle fs;
    THINSNAP_RETURN_IF_ERROR(fs.Open(device, 0));
    std::vector<ByteRange> ranges;
    if (SuperblockTime(fs.get()->super->s_mtime, fs.get()->super->s_mtime_hi) < changed_since &&
        SuperblockTime(fs.get()->super->s_wtime, fs.get()->super->s_wtime_hi) < changed_since) {
      return ranges;
    }
    THINSNAP_RETURN_IF_ERROR(FreeBlockRanges(fs.get(), ranges));
    THINSNAP_RETURN_IF_ERROR(IdleJournalRanges(fs.get(), ranges));
    std::sort(ranges.begin(), ranges.end(),
              [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
    // Merge touching ranges (journal blocks next to free ones) before aligning.
    std::vector<ByteRange> merged;
    for (const ByteRange& r : ranges) {
      if (!merged.empty() && merged.back().offset + merged.back().length >= r.offset) {
        const uint64_t end =
            std::max(merged.back().offset + merged.back().length, r.offset + r.length);
        merged.back().length = end - merged.back().offset;
      } else {
        merged.push_back(r);
      }
    }
    return AlignInward(merged, align_bytes);
  }

 private:
  std::string type_;
  std::vector<std::string> mkfs_options_;
};

}  // namespace

std::unique_ptr<Filesystem> MakeExtFilesystem(std::string type,
                                              std::vector<std::string> mkfs_options) {
  return std::make_unique<ExtFilesystem>(std::move(type), std::move(mkfs_options));
}

}  // namespace thinsnap
