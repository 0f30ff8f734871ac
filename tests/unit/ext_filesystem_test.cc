#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "base/subprocess.h"
#include "fs/filesystem.h"

namespace thinsnap {
namespace {

namespace stdfs = std::filesystem;

class ExtFilesystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (stdfs::temp_directory_path() / "thinsnap-extfs-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    image_ = (dir_ / "disk.img").string();
  }
  void TearDown() override { stdfs::remove_all(dir_); }

  // A sparse file stands in for the block device: mkfs and libext2fs accept both.
  void MakeSparseImage(const std::string& path, off_t size) {
    int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, size), 0);
    close(fd);
  }

  stdfs::path dir_;
  std::string image_;
};

struct RootListing {
  std::vector<std::string> names;
  int links = 0;
  unsigned uid = 0;
};

// Reads the root directory with libext2fs, independently of the code under test.
RootListing ListRoot(const std::string& image) {
  RootListing out;
  ext2_filsys fs = nullptr;
  EXPECT_EQ(ext2fs_open(image.c_str(), EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs), 0);
  if (fs == nullptr) return out;
  auto collect = [](ext2_dir_entry* d, int, int, char*, void* priv) -> int {
    static_cast<std::vector<std::string>*>(priv)->emplace_back(
        d->name, static_cast<size_t>(ext2fs_dirent_name_len(d)));
    return 0;
  };
  EXPECT_EQ(ext2fs_dir_iterate(fs, EXT2_ROOT_INO, 0, nullptr, collect, &out.names), 0);
  ext2_inode root;
  EXPECT_EQ(ext2fs_read_inode(fs, EXT2_ROOT_INO, &root), 0);
  out.links = root.i_links_count;
  out.uid = inode_uid(root);
  ext2fs_close_free(&fs);
  return out;
}

// e2fsck in no-change mode: exit 0 means the filesystem is fully consistent.
void ExpectFsckClean(const std::string& image) {
  auto r = RunCommand({"e2fsck", "-f", "-n", image});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
}

TEST_F(ExtFilesystemTest, FormatLeavesAnEmptyConsistentRoot) {
  MakeSparseImage(image_, 64 << 20);
  auto fs = MakeExtFilesystem("ext4", {});
  EXPECT_EQ(fs->type(), "ext4");
  Status s = fs->Format(image_);
  ASSERT_TRUE(s.ok()) << s.ToString();

  RootListing root = ListRoot(image_);
  std::sort(root.names.begin(), root.names.end());
  EXPECT_EQ(root.names, (std::vector<std::string>{".", ".."}));
  EXPECT_EQ(root.links, 2);  // lost+found's ".." no longer counts
  EXPECT_EQ(root.uid, 0u);   // root_owner=0:0
  ExpectFsckClean(image_);

  // Inodes 1-10 are reserved and count as used (root, journal, resize...);
  // lost+found, the first ordinary inode (11), is gone.
  Result<int64_t> used = fs->InodesUsed(image_);
  ASSERT_TRUE(used.ok()) << used.status().ToString();
  EXPECT_EQ(*used, 10);
}

TEST_F(ExtFilesystemTest, ConfiguredOptionsReplaceDefaultsAndKeepRootOwner) {
  MakeSparseImage(image_, 64 << 20);
  // A custom -E is merged with root_owner=0:0 (mke2fs honours only the last -E).
  auto fs = MakeExtFilesystem("ext4", {"-E", "lazy_itable_init=1", "-N", "4096", "-L", "thin"});
  Status s = fs->Format(image_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  RootListing root = ListRoot(image_);
  EXPECT_EQ(root.names.size(), 2u);
  EXPECT_EQ(root.uid, 0u);
  ExpectFsckClean(image_);

  auto r = RunCommand({"dumpe2fs", "-h", image_});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NE(r->out.find("Filesystem volume name:   thin"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("Inode count:              4096"), std::string::npos) << r->out;
}

TEST_F(ExtFilesystemTest, Ext2HasNoJournalAndStillFormats) {
  MakeSparseImage(image_, 16 << 20);
  auto fs = MakeExtFilesystem("ext2", {});
  Status s = fs->Format(image_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ListRoot(image_).names.size(), 2u);
  ExpectFsckClean(image_);
  Result<int64_t> used = fs->InodesUsed(image_);
  ASSERT_TRUE(used.ok()) << used.status().ToString();
  EXPECT_EQ(*used, 10);
}

TEST_F(ExtFilesystemTest, InodesUsedCountsNewFiles) {
  MakeSparseImage(image_, 64 << 20);
  auto fs = MakeExtFilesystem("ext4", {});
  ASSERT_TRUE(fs->Format(image_).ok());
  // debugfs adds entries without a mount; each mkdir/write takes one inode.
  const std::string src = (dir_ / "payload").string();
  MakeSparseImage(src, 4096);
  auto r = RunCommand({"debugfs", "-w", "-R", "mkdir /a", image_});
  ASSERT_TRUE(r.ok() && r->exit_code == 0);
  r = RunCommand({"debugfs", "-w", "-R", "write " + src + " /a/f", image_});
  ASSERT_TRUE(r.ok() && r->exit_code == 0);
  Result<int64_t> used = fs->InodesUsed(image_);
  ASSERT_TRUE(used.ok()) << used.status().ToString();
  EXPECT_EQ(*used, 12);
}

TEST_F(ExtFilesystemTest, InodesUsedOnGarbageFails) {
  MakeSparseImage(image_, 8 << 20);
  Result<int64_t> used = MakeExtFilesystem("ext4", {})->InodesUsed(image_);
  ASSERT_FALSE(used.ok());
  EXPECT_EQ(used.status().code(), Code::kFailedPrecondition) << used.status().ToString();
}

TEST_F(ExtFilesystemTest, MissingDeviceIsNotFound) {
  auto fs = MakeExtFilesystem("ext4", {});
  Result<int64_t> used = fs->InodesUsed((dir_ / "nope").string());
  ASSERT_FALSE(used.ok());
  EXPECT_EQ(used.status().code(), Code::kNotFound) << used.status().ToString();
}

TEST_F(ExtFilesystemTest, MkfsFailureCarriesItsStderr) {
  // mkfs refuses a 4 KiB "device": the error must say so, not just "failed".
  MakeSparseImage(image_, 4096);
  Status s = MakeExtFilesystem("ext4", {})->Format(image_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kInternal);
  EXPECT_NE(s.message().find("mkfs.ext4"), std::string::npos) << s.ToString();
}

// Every group's inode table is marked zeroed, so the kernel has nothing to
// initialise in the background (no ext4lazyinit writes into the pool).
void ExpectNothingLeftToInitialise(const std::string& image) {
  ext2_filsys fs = nullptr;
  ASSERT_EQ(ext2fs_open(image.c_str(), EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs), 0);
  for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
    EXPECT_TRUE(ext2fs_bg_flags_test(fs, g, EXT2_BG_INODE_ZEROED)) << "group " << g;
  }
  ext2fs_close_free(&fs);
}

TEST_F(ExtFilesystemTest, FormatLeavesNoBackgroundInitialisation) {
  for (const std::string type : {"ext4", "ext3", "ext2"}) {
    MakeSparseImage(image_, 512 << 20);
    ASSERT_TRUE(MakeExtFilesystem(type, {})->Format(image_).ok()) << type;
    ExpectNothingLeftToInitialise(image_);
    ExpectFsckClean(image_);
    // No inode table was written: the sparse image stays sparse. (ext3's
    // mke2fs still zeroes the 16 MiB journal, which it skips only with
    // uninit_bg: a one-off cost of the base device, shared by every snapshot.)
    struct stat st;
    ASSERT_EQ(stat(image_.c_str(), &st), 0);
    const int64_t limit = (type == "ext3" ? 17 : 1) << 20;
    EXPECT_LT(st.st_blocks * 512, limit) << type << " wrote " << st.st_blocks * 512 << " bytes";
  }
}

TEST_F(ExtFilesystemTest, ConfiguredOptionsKeepTheZeroedDeviceAssumption) {
  MakeSparseImage(image_, 512 << 20);
  ASSERT_TRUE(MakeExtFilesystem("ext4", {"-E", "lazy_itable_init=1"})->Format(image_).ok());
  ExpectNothingLeftToInitialise(image_);
}

TEST_F(ExtFilesystemTest, UnusedRangesAreAlignedFreeSpaceAndTheIdleJournal) {
  MakeSparseImage(image_, 512 << 20);
  auto fs = MakeExtFilesystem("ext4", {});
  ASSERT_TRUE(fs->Format(image_).ok());
  constexpr uint64_t kAlign = 64 << 10;
  auto ranges = fs->UnusedRanges(image_, kAlign, /*changed_since=*/0);
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  ASSERT_FALSE(ranges->empty());
  uint64_t total = 0, last_end = 0;
  for (const ByteRange& r : *ranges) {
    EXPECT_EQ(r.offset % kAlign, 0u);
    EXPECT_EQ(r.length % kAlign, 0u);
    EXPECT_GT(r.length, 0u);
    EXPECT_GE(r.offset, last_end) << "ranges overlap or are unsorted";
    last_end = r.offset + r.length;
    total += r.length;
  }
  EXPECT_LE(last_end, 512ull << 20);
  // The idle (16 MiB) journal's log is unused; free space only where a group
  // ever handed out blocks (on a fresh filesystem, the first groups).
  EXPECT_GT(total, 15ull << 20) << "the idle journal should count as unused";
  EXPECT_LT(total, 512ull << 20);
  // The blocks in use (superblock, group descriptors, root) are never named.
  EXPECT_GT(ranges->front().offset, 0u);
}

// Free blocks of a group that never handed one out were never written, so
// there is nothing to discard there; once the group has been allocated from
// (here: a block taken and freed again, as by a deleted file), its free
// blocks are named.
TEST_F(ExtFilesystemTest, UnusedRangesSkipGroupsNeverAllocatedFrom) {
  MakeSparseImage(image_, 512 << 20);
  auto fs = MakeExtFilesystem("ext4", {});
  ASSERT_TRUE(fs->Format(image_).ok());
  ext2_filsys raw = nullptr;
  ASSERT_EQ(
      ext2fs_open(image_.c_str(), EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &raw), 0);
  ASSERT_EQ(ext2fs_read_bitmaps(raw), 0);
  const dgrp_t group = 1;  // mkfs leaves the last group initialised, not the others
  ASSERT_TRUE(ext2fs_bg_flags_test(raw, group, EXT2_BG_BLOCK_UNINIT));
  const uint64_t group_first = ext2fs_group_first_block2(raw, group) * raw->blocksize;
  const uint64_t group_end = (ext2fs_group_last_block2(raw, group) + 1) * raw->blocksize;
  auto covered = [&](const std::vector<ByteRange>& ranges) {
    uint64_t bytes = 0;
    for (const ByteRange& r : ranges) {
      const uint64_t b = std::max(r.offset, group_first);
      const uint64_t e = std::min(r.offset + r.length, group_end);
      if (e > b) bytes += e - b;
    }
    return bytes;
  };
  auto before = fs->UnusedRanges(image_, 4096, 0);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_EQ(covered(*before), 0u);

  blk64_t block = 0;
  ASSERT_EQ(ext2fs_new_block2(raw, ext2fs_group_first_block2(raw, group), nullptr, &block), 0);
  ext2fs_block_alloc_stats2(raw, block, +1);
  ext2fs_block_alloc_stats2(raw, block, -1);
  ASSERT_FALSE(ext2fs_bg_flags_test(raw, group, EXT2_BG_BLOCK_UNINIT));
  ASSERT_EQ(ext2fs_close_free(&raw), 0);

  auto after = fs->UnusedRanges(image_, 4096, 0);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_GT(covered(*after), (group_end - group_first) / 2);
}

// A snapshot taken after the filesystem's last mount and write has freed
// nothing of its own: there is nothing to read, and nothing to give back.
TEST_F(ExtFilesystemTest, NoUnusedRangesWhenUntouchedSince) {
  MakeSparseImage(image_, 64 << 20);
  auto fs = MakeExtFilesystem("ext4", {});
  ASSERT_TRUE(fs->Format(image_).ok());
  const int64_t later = time(nullptr) + 60;
  auto ranges = fs->UnusedRanges(image_, 64 << 10, later);
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  EXPECT_TRUE(ranges->empty());
  // Written since (the format itself, just now): the ranges are there.
  ranges = fs->UnusedRanges(image_, 64 << 10, later - 120);
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  EXPECT_FALSE(ranges->empty());
}

TEST_F(ExtFilesystemTest, NonExtTypeIsRejected) {
  MakeSparseImage(image_, 64 << 20);
  Status s = MakeExtFilesystem("xfs", {})->Format(image_);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
}

}  // namespace
}  // namespace thinsnap
