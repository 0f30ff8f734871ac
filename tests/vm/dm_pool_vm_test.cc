// DmPool against a real kernel: run inside the test VM (tests/vm/run), as root.
//
// Each test builds its own pool on loop devices over sparse files in /tmp
// (tmpfs in the guest), exercises DmPool, and tears everything down; the
// teardown checks the metadata with thin_check. The Latency test prints
// medians of the raw operations; it asserts only that they succeed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libdevmapper.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/subprocess.h"
#include "dm/device_mapper.h"
#include "dm/thin.h"
#include "pool/dm_pool.h"

namespace thinsnap {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kThinSize = 64 * kMiB;

std::string RunTool(const std::vector<std::string>& argv) {
  auto out = RunCommand(argv);
  EXPECT_TRUE(out.ok()) << argv[0] << ": " << out.status().ToString();
  if (!out.ok()) return "";
  EXPECT_EQ(out->exit_code, 0) << argv[0] << " failed: " << out->err;
  std::string s = out->out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// A 4 KiB-aligned buffer for O_DIRECT I/O, filled with `byte`.
struct AlignedBuf {
  explicit AlignedBuf(size_t n, char byte = 0) : size(n) {
    void* p = nullptr;
    if (posix_memalign(&p, 4096, n) != 0) abort();
    data = static_cast<char*>(p);
    memset(data, byte, n);
  }
  ~AlignedBuf() { free(data); }
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
  char* data;
  size_t size;
};

// Writes `n` bytes of `byte` at `offset` with O_DIRECT, bypassing the cache.
void WriteAt(const std::string& dev, uint64_t offset, size_t n, char byte) {
  int fd = open(dev.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  ASSERT_GE(fd, 0) << dev << ": " << strerror(errno);
  AlignedBuf buf(n, byte);
  EXPECT_EQ(pwrite(fd, buf.data, n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
  EXPECT_EQ(fsync(fd), 0);
  close(fd);
}

// True if all `n` bytes at `offset` equal `byte`.
bool ReadsAs(const std::string& dev, uint64_t offset, size_t n, char byte) {
  int fd = open(dev.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return false;
  AlignedBuf buf(n);
  const bool ok = pread(fd, buf.data, n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n);
  close(fd);
  return ok && std::all_of(buf.data, buf.data + n, [&](char c) { return c == byte; });
}

bool IsBlockNode(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISBLK(st.st_mode);
}

class DmPoolVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "needs root and device-mapper: run through tests/vm/run";
    const std::string tag = std::to_string(getpid()) + "-" +
                            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    pool_name_ = "tsvm-" + std::to_string(getpid());
    data_file_ = "/tmp/tsvm-data-" + tag;
    meta_file_ = "/tmp/tsvm-meta-" + tag;
    RunTool({"truncate", "-s", "1G", data_file_});
    RunTool({"truncate", "-s", "64M", meta_file_});
    // A fresh pool needs a zeroed metadata superblock.
    RunTool({"dd", "if=/dev/zero", "of=" + meta_file_, "bs=4096", "count=1", "conv=notrunc",
             "status=none"});
    data_loop_ = RunTool({"losetup", "--find", "--show", data_file_});
    meta_loop_ = RunTool({"losetup", "--find", "--show", meta_file_});
    ASSERT_FALSE(data_loop_.empty());
    ASSERT_FALSE(meta_loop_.empty());
    auto data = dm::BlockDevNum(data_loop_);
    auto meta = dm::BlockDevNum(meta_loop_);
    ASSERT_TRUE(data.ok() && meta.ok());
    dm::ThinPoolTable table;
    table.length_sectors = 1024 * kMiB / 512;
    table.metadata_dev = *meta;
    table.data_dev = *data;
    table.block_sectors = 128;
    table.low_water_blocks = 1024;
    table.features = {"skip_block_zeroing", "error_if_no_space"};
    Status st = dm::Create(pool_name_, {table.ToTarget()});
    ASSERT_TRUE(st.ok()) << st.ToString();
    pool_created_ = true;
    auto pool = OpenDmPool(pool_name_);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    pool_ = std::move(pool.value());
  }

  void TearDown() override {
    if (pool_) {
      auto active = pool_->ListActive();
      EXPECT_TRUE(active.ok());
      if (active.ok()) {
        for (ThinId id : *active) EXPECT_TRUE(pool_->Deactivate(id).ok()) << id;
      }
      pool_.reset();
    }
    if (pool_created_) {
      Status st = dm::Remove(pool_name_, dm::RemoveOptions{.busy_retries = 20});
      EXPECT_TRUE(st.ok()) << st.ToString();
      EXPECT_FALSE(IsBlockNode(dm::MapperPath(pool_name_)));
      auto check = RunCommand({"thin_check", meta_loop_});
      ASSERT_TRUE(check.ok());
      EXPECT_EQ(check->exit_code, 0) << "thin_check: " << check->out << check->err;
    }
    for (const std::string& loop : {data_loop_, meta_loop_}) {
      if (!loop.empty()) RunTool({"losetup", "-d", loop});
    }
    unlink(data_file_.c_str());
    unlink(meta_file_.c_str());
  }

  std::string ThinName(ThinId id) const { return pool_name_ + "-thin-" + std::to_string(id); }

  void MakeWrittenSnapshot();

  std::string pool_name_, data_file_, meta_file_, data_loop_, meta_loop_;
  bool pool_created_ = false;
  std::unique_ptr<ThinPool> pool_;
};

TEST_F(DmPoolVmTest, OpenChecksTheDevice) {
  EXPECT_EQ(pool_->name(), pool_name_);
  EXPECT_EQ(OpenDmPool("tsvm-no-such-pool").status().code(), Code::kNotFound);
  EXPECT_EQ(OpenDmPool(std::string(120, 'p')).status().code(), Code::kInvalidArgument);
  const std::string other = pool_name_ + "-err";
  ASSERT_TRUE(dm::Create(other, {dm::Target{0, 8, "error", ""}}).ok());
  EXPECT_EQ(OpenDmPool(other).status().code(), Code::kFailedPrecondition);
  EXPECT_TRUE(dm::Remove(other).ok());
}

TEST_F(DmPoolVmTest, DmLayerErrnos) {
  const std::string other = pool_name_ + "-err";
  ASSERT_TRUE(dm::Create(other, {dm::Target{0, 8, "error", ""}}).ok());
  Status again = dm::Create(other, {dm::Target{0, 8, "error", ""}});
  EXPECT_EQ(again.code(), Code::kAlreadyExists) << again.ToString();
  auto info = dm::GetInfo(other);
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->exists);
  EXPECT_FALSE(info->suspended);
  EXPECT_EQ(info->open_count, 0);
  auto listed = dm::ListDevices();
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(std::any_of(listed->begin(), listed->end(), [&](const dm::DeviceEntry& e) {
    return e.name == other && e.dev == info->dev;
  }));
  EXPECT_TRUE(dm::Remove(other).ok());
  Status gone = dm::Remove(other);
  EXPECT_EQ(gone.code(), Code::kNotFound);
  EXPECT_EQ(gone.sys_errno(), ENXIO);
  EXPECT_FALSE(dm::GetInfo(other)->exists);
  // A table the kernel rejects leaves nothing behind.
  Status bad = dm::Create(other, {dm::Target{0, 8, "thin", "0:0 1"}});
  EXPECT_FALSE(bad.ok());
  EXPECT_FALSE(dm::GetInfo(other)->exists);
}

TEST_F(DmPoolVmTest, MessagesMapErrnos) {
  ASSERT_TRUE(pool_->CreateThin(1).ok());
  Status dup = pool_->CreateThin(1);
  EXPECT_EQ(dup.code(), Code::kAlreadyExists) << dup.ToString();
  EXPECT_EQ(dup.sys_errno(), EEXIST);

  Status missing = pool_->Delete(99);
  EXPECT_EQ(missing.code(), Code::kNotFound) << missing.ToString();
  EXPECT_EQ(missing.sys_errno(), ENODATA);

  ASSERT_TRUE(pool_->Activate(1, kThinSize, Access::kReadWrite).ok());
  Status busy = pool_->Delete(1);
  EXPECT_EQ(busy.code(), Code::kUnavailable) << busy.ToString();
  EXPECT_EQ(busy.sys_errno(), EBUSY);
  ASSERT_TRUE(pool_->Deactivate(1).ok());
  EXPECT_TRUE(pool_->Delete(1).ok());

  EXPECT_EQ(pool_->CreateThin(kMaxThinId + 1).code(), Code::kInvalidArgument);
  EXPECT_EQ(pool_->CreateSnap(5, 77).code(), Code::kNotFound);
}

TEST_F(DmPoolVmTest, Status) {
  auto st = pool_->QueryStatus();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->transaction_id, 0u);
  EXPECT_EQ(st->data_block_bytes, 64u * 1024);
  EXPECT_EQ(st->data_total_blocks, 1024u * kMiB / (64 * 1024));
  EXPECT_EQ(st->data_used_blocks, 0u);
  EXPECT_EQ(st->meta_total_blocks, 64u * kMiB / 4096);
  EXPECT_GT(st->meta_used_blocks, 0u);
  EXPECT_TRUE(st->error_if_no_space);
  EXPECT_FALSE(st->read_only || st->out_of_data_space || st->needs_check || st->failed);
}

TEST_F(DmPoolVmTest, ActivateDeactivate) {
  ASSERT_TRUE(pool_->CreateThin(3).ok());
  const std::string path = pool_->DevicePath(3);
  EXPECT_EQ(path, "/dev/mapper/" + ThinName(3));
  EXPECT_EQ(pool_->MappedBytes(3).status().code(), Code::kNotFound);
  EXPECT_EQ(pool_->Activate(3, 1000, Access::kReadWrite).code(), Code::kInvalidArgument);

  ASSERT_TRUE(pool_->Activate(3, kThinSize, Access::kReadWrite).ok());
  EXPECT_TRUE(IsBlockNode(path));
  EXPECT_EQ(*pool_->MappedBytes(3), 0u);
  WriteAt(path, 0, 1 * kMiB, 'a');
  EXPECT_EQ(*pool_->MappedBytes(3), 1 * kMiB);
  EXPECT_EQ(pool_->QueryStatus()->data_used_blocks, 16u);

  // Same request again is a no-op; a different one is refused.
  EXPECT_TRUE(pool_->Activate(3, kThinSize, Access::kReadWrite).ok());
  EXPECT_EQ(pool_->Activate(3, kThinSize, Access::kReadOnly).code(), Code::kFailedPrecondition);
  EXPECT_EQ(pool_->Activate(3, 2 * kThinSize, Access::kReadWrite).code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(*pool_->ListActive(), std::vector<ThinId>{3});

  ASSERT_TRUE(pool_->Deactivate(3).ok());
  EXPECT_FALSE(IsBlockNode(path));
  EXPECT_TRUE(pool_->ListActive()->empty());
  EXPECT_TRUE(pool_->Deactivate(3).ok());  // not active: no-op

  // The data outlived the activation.
  ASSERT_TRUE(pool_->Activate(3, kThinSize, Access::kReadWrite).ok());
  EXPECT_TRUE(ReadsAs(path, 0, 1 * kMiB, 'a'));
  EXPECT_TRUE(pool_->Deactivate(3).ok());
}

TEST_F(DmPoolVmTest, ReadOnlyActivation) {
  ASSERT_TRUE(pool_->CreateThin(4).ok());
  ASSERT_TRUE(pool_->Activate(4, kThinSize, Access::kReadWrite).ok());
  WriteAt(pool_->DevicePath(4), 0, 64 * 1024, 'r');
  ASSERT_TRUE(pool_->Deactivate(4).ok());

  ASSERT_TRUE(pool_->Activate(4, kThinSize, Access::kReadOnly).ok());
  auto info = dm::GetInfo(ThinName(4));
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->read_only);
  EXPECT_TRUE(ReadsAs(pool_->DevicePath(4), 0, 64 * 1024, 'r'));
  // The kernel may let the node be opened for writing, but no write gets through.
  int fd = open(pool_->DevicePath(4).c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  if (fd >= 0) {
    AlignedBuf buf(4096, 'w');
    EXPECT_LT(pwrite(fd, buf.data, buf.size, 0), 0) << "wrote to a read-only device";
    close(fd);
  }
  EXPECT_TRUE(ReadsAs(pool_->DevicePath(4), 0, 64 * 1024, 'r'));
  EXPECT_TRUE(pool_->Activate(4, kThinSize, Access::kReadOnly).ok());
  EXPECT_TRUE(pool_->Deactivate(4).ok());
}

TEST_F(DmPoolVmTest, SnapshotOfActiveOrigin) {
  ASSERT_TRUE(pool_->CreateThin(1).ok());
  ASSERT_TRUE(pool_->Activate(1, kThinSize, Access::kReadWrite).ok());
  const std::string origin = pool_->DevicePath(1);
  WriteAt(origin, 0, 1 * kMiB, 'o');

  // Keep the origin open, as a mounted filesystem would.
  int held = open(origin.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0);
  ASSERT_TRUE(pool_->CreateSnap(2, 1).ok());
  auto info = dm::GetInfo(ThinName(1));
  EXPECT_FALSE(info->suspended);

  // A failed message still resumes the origin.
  Status dup = pool_->CreateSnap(2, 1);
  EXPECT_EQ(dup.code(), Code::kAlreadyExists) << dup.ToString();
  EXPECT_FALSE(dm::GetInfo(ThinName(1))->suspended);
  close(held);

  WriteAt(origin, 0, 64 * 1024, 'n');  // after the snapshot: must not show in it
  ASSERT_TRUE(pool_->Activate(2, kThinSize, Access::kReadOnly).ok());
  EXPECT_TRUE(ReadsAs(pool_->DevicePath(2), 0, 1 * kMiB, 'o'));
  EXPECT_TRUE(ReadsAs(origin, 0, 64 * 1024, 'n'));
  EXPECT_EQ(*pool_->MappedBytes(2), 1 * kMiB);

  // Snapshot of an inactive device needs no suspend.
  ASSERT_TRUE(pool_->Deactivate(2).ok());
  ASSERT_TRUE(pool_->CreateSnap(3, 2).ok());
  EXPECT_EQ(*pool_->ListActive(), std::vector<ThinId>{1});
}

TEST_F(DmPoolVmTest, ListThinIdsIsExact) {
  EXPECT_TRUE(pool_->ListThinIds()->empty());
  for (ThinId id : {1u, 2u, 5u, 100u, kMaxThinId}) ASSERT_TRUE(pool_->CreateThin(id).ok());
  ASSERT_TRUE(pool_->CreateSnap(7, 5).ok());
  ASSERT_TRUE(pool_->Delete(2).ok());
  ASSERT_TRUE(pool_->Activate(100, kThinSize, Access::kReadWrite).ok());
  auto ids = pool_->ListThinIds();
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(*ids, (std::vector<ThinId>{1, 5, 7, 100, kMaxThinId}));
  // The metadata snapshot was released, and a second call works.
  auto st = pool_->QueryStatus();
  ASSERT_TRUE(st.ok());
  auto line = dm::GetStatus(pool_name_);
  ASSERT_TRUE(line.ok());
  EXPECT_FALSE(dm::ParseThinPoolStatus(line->front().ToString())->held_metadata_root.has_value());
  EXPECT_EQ(pool_->ListThinIds()->size(), 5u);
  // A metadata snapshot left behind (by a crashed caller) does not block it.
  ASSERT_TRUE(dm::SendReserveMetadataSnap(pool_name_).ok());
  EXPECT_EQ(pool_->ListThinIds()->size(), 5u);
}

TEST_F(DmPoolVmTest, DeferredRemovalWhileOpen) {
  ASSERT_TRUE(pool_->CreateThin(9).ok());
  ASSERT_TRUE(pool_->Activate(9, kThinSize, Access::kReadWrite).ok());
  const std::string path = pool_->DevicePath(9);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Status st = pool_->Deactivate(9);
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_EQ(st.sys_errno(), EBUSY);
  auto info = dm::GetInfo(ThinName(9));
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->exists);
  EXPECT_TRUE(info->deferred_remove);
  EXPECT_EQ(info->open_count, 1);
  close(fd);
  // The kernel removes it on last close.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = !dm::GetInfo(ThinName(9))->exists;
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(gone);
  EXPECT_TRUE(pool_->ListActive()->empty());
  // Deactivate again is a no-op that also drops the node the kernel left.
  EXPECT_TRUE(pool_->Deactivate(9).ok());
  EXPECT_FALSE(IsBlockNode(path));
  // The name disappears before the kernel has closed the thin device, so the
  // pool may still call it busy for a moment.
  Status del = pool_->Delete(9);
  for (int i = 0; i < 100 && del.code() == Code::kUnavailable; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    del = pool_->Delete(9);
  }
  EXPECT_TRUE(del.ok()) << del.ToString();
}

// A device someone holds open without O_EXCL, as qemu holds a hot-plugged
// disk, is neither removed nor scheduled for removal for a delete: the holder
// keeps its data until it closes the device.
TEST_F(DmPoolVmTest, DeactivateForDeleteLeavesAnOpenDeviceAlone) {
  ASSERT_TRUE(pool_->CreateThin(5).ok());
  ASSERT_TRUE(pool_->Activate(5, kThinSize, Access::kReadWrite).ok());
  const std::string path = pool_->DevicePath(5);
  WriteAt(path, 0, kMiB, 'v');
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Status st = pool_->DeactivateForDelete(5);
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  st = pool_->Withdraw(5);
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_TRUE(IsBlockNode(path));
  auto info = dm::GetInfo(ThinName(5));
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->exists);
  EXPECT_FALSE(info->deferred_remove);
  EXPECT_EQ(pool_->Delete(5).code(), Code::kUnavailable);
  EXPECT_EQ(pool_->DiscardInactive(5, kThinSize, std::nullopt).code(), Code::kFailedPrecondition);
  EXPECT_TRUE(ReadsAs(path, 0, kMiB, 'v'));
  close(fd);
  ASSERT_TRUE(pool_->DeactivateForDelete(5).ok());
  EXPECT_FALSE(IsBlockNode(path));
  EXPECT_TRUE(pool_->Delete(5).ok());
}

// Allocated bytes of a (sparse) file.
uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

// Thin device 1 holds 8 MiB; 2, its snapshot, left active, wrote 1 MiB over
// the origin's blocks (at 4 MiB) and 1 MiB where the origin has none (at 32 MiB).
void DmPoolVmTest::MakeWrittenSnapshot() {
  ASSERT_TRUE(pool_->CreateThin(1).ok());
  ASSERT_TRUE(pool_->Activate(1, kThinSize, Access::kReadWrite).ok());
  WriteAt(pool_->DevicePath(1), 0, 8 * kMiB, 'o');
  ASSERT_TRUE(pool_->Deactivate(1).ok());
  ASSERT_TRUE(pool_->CreateSnap(2, 1).ok());
  ASSERT_TRUE(pool_->Activate(2, kThinSize, Access::kReadWrite).ok());
  WriteAt(pool_->DevicePath(2), 4 * kMiB, kMiB, 'n');
  WriteAt(pool_->DevicePath(2), 32 * kMiB, kMiB, 'n');
}

// A snapshot's own blocks are what it wrote over its origin; discarding just
// those gives them back to the data file, and the origin keeps its data.
TEST_F(DmPoolVmTest, OwnRangesAreWhatASnapshotWroteAndDiscardingThemShrinksTheDataFile) {
  ASSERT_NO_FATAL_FAILURE(MakeWrittenSnapshot());
  // Withdrawn: out of clients' reach, kept privately for the discard.
  ASSERT_TRUE(pool_->Withdraw(2).ok());
  EXPECT_FALSE(IsBlockNode(pool_->DevicePath(2)));
  EXPECT_TRUE(pool_->ListActive()->empty());
  EXPECT_TRUE(dm::GetInfo(pool_name_ + "-reclaim-2")->exists);
  ASSERT_TRUE(pool_->CreateSnap(3, 1).ok());  // wrote nothing

  auto own = pool_->OwnRanges({2, 3, 77});
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  ASSERT_EQ(own->size(), 3u);
  ASSERT_TRUE((*own)[0].ok()) << (*own)[0].status().ToString();
  EXPECT_EQ(*(*own)[0], (std::vector<ByteRange>{{4 * kMiB, kMiB}, {32 * kMiB, kMiB}}));
  ASSERT_TRUE((*own)[1].ok());
  EXPECT_TRUE((*own)[1]->empty());
  EXPECT_EQ((*own)[2].status().code(), Code::kNotFound);  // no thin id 77

  const uint64_t before = AllocatedBytes(data_file_);
  Status st = pool_->DiscardInactive(2, kThinSize, *(*own)[0]);
  ASSERT_TRUE(st.ok()) << st.ToString();
  const uint64_t after = AllocatedBytes(data_file_);
  EXPECT_GE(before - after, 2 * kMiB) << before << " -> " << after;
  // The private activation is gone again, and never showed as a thin device.
  EXPECT_TRUE(pool_->ListActive()->empty());
  EXPECT_FALSE(dm::GetInfo(pool_name_ + "-reclaim-2")->exists);
  ASSERT_TRUE(pool_->Delete(2).ok());
  ASSERT_TRUE(pool_->Delete(3).ok());
  ASSERT_TRUE(pool_->Activate(1, kThinSize, Access::kReadOnly).ok());
  EXPECT_TRUE(ReadsAs(pool_->DevicePath(1), 0, 8 * kMiB, 'o'));
}

// The metadata is read live, without a metadata snapshot (thin_metadata.h):
// while the pool commits again and again (snapshots made and deleted, a device
// written and flushed), every read is still exactly right.
TEST_F(DmPoolVmTest, OwnRangesStayExactWhileThePoolCommits) {
  ASSERT_NO_FATAL_FAILURE(MakeWrittenSnapshot());
  ASSERT_TRUE(pool_->Deactivate(2).ok());
  ASSERT_TRUE(pool_->CreateThin(3).ok());
  ASSERT_TRUE(pool_->Activate(3, kThinSize, Access::kReadWrite).ok());

  std::atomic<bool> stop{false};
  std::atomic<int> commits{0};
  std::thread churn([&] {
    for (ThinId id = 100; !stop.load(); ++id) {
      Status st = pool_->CreateSnap(id, 1);
      if (st.ok()) st = pool_->Delete(id);
      if (!st.ok()) {
        ADD_FAILURE() << "churn: " << st.ToString();
        return;
      }
      WriteAt(pool_->DevicePath(3), (id % 64) * kMiB, kMiB, 'c');  // fsyncs: a commit
      commits += 3;
    }
  });
  const std::vector<ByteRange> expected = {{4 * kMiB, kMiB}, {32 * kMiB, kMiB}};
  int reads = 0;
  for (; reads < 40 || (commits.load() < 90 && reads < 5000); ++reads) {
    auto own = pool_->OwnRanges({2});
    ASSERT_TRUE(own.ok()) << own.status().ToString();
    ASSERT_TRUE((*own)[0].ok()) << (*own)[0].status().ToString();
    ASSERT_EQ(*(*own)[0], expected) << "read " << reads;
  }
  stop = true;
  churn.join();
  std::printf("%d reads exact while the pool committed about %d times\n", reads, commits.load());
  EXPECT_GE(commits.load(), 90);
  ASSERT_TRUE(pool_->Deactivate(3).ok());
}

TEST_F(DmPoolVmTest, ReactivateOverStaleNode) {
  ASSERT_TRUE(pool_->CreateThin(9).ok());
  ASSERT_TRUE(pool_->CreateThin(10).ok());
  ASSERT_TRUE(pool_->Activate(9, kThinSize, Access::kReadWrite).ok());
  int fd = open(pool_->DevicePath(9).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(pool_->Deactivate(9).code(), Code::kUnavailable);
  // Take the minor number 9 had, then let the deferred removal happen.
  close(fd);
  for (int i = 0; i < 200 && dm::GetInfo(ThinName(9))->exists; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(pool_->Activate(10, kThinSize, Access::kReadWrite).ok());
  ASSERT_TRUE(pool_->Activate(9, kThinSize, Access::kReadWrite).ok());
  auto info = dm::GetInfo(ThinName(9));
  EXPECT_EQ(*dm::BlockDevNum(pool_->DevicePath(9)), info->dev);
}

// What a crash between DM_DEVICE_CREATE and the table load leaves: the name,
// with no table and no node. (A bare CREATE task queues no node op.)
void CreateBareDevice(const std::string& name) {
  dm_task* t = dm_task_create(DM_DEVICE_CREATE);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(dm_task_set_name(t, name.c_str()));
  EXPECT_TRUE(dm_task_run(t)) << "create " << name;
  dm_task_destroy(t);
}

TEST_F(DmPoolVmTest, ActivateCompletesAnActivationACrashCutShort) {
  ASSERT_TRUE(pool_->CreateThin(4).ok());
  ASSERT_TRUE(pool_->CreateThin(5).ok());

  CreateBareDevice(ThinName(4));
  EXPECT_EQ(*pool_->ListActive(), std::vector<ThinId>{4});
  EXPECT_EQ(*pool_->ListHalfMade(), std::vector<ThinId>{4});
  EXPECT_FALSE(dm::GetInfo(ThinName(4))->live_table);
  Status st = pool_->Activate(4, kThinSize, Access::kReadWrite);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(pool_->ListHalfMade()->empty());
  EXPECT_TRUE(dm::GetInfo(ThinName(4))->live_table);
  EXPECT_TRUE(IsBlockNode(pool_->DevicePath(4)));
  WriteAt(pool_->DevicePath(4), 0, 1 * kMiB, 'c');
  EXPECT_TRUE(ReadsAs(pool_->DevicePath(4), 0, 1 * kMiB, 'c'));

  // Resumed, but the node was never made.
  ASSERT_TRUE(pool_->Activate(5, kThinSize, Access::kReadWrite).ok());
  ASSERT_EQ(unlink(pool_->DevicePath(5).c_str()), 0);
  EXPECT_EQ(*pool_->ListHalfMade(), std::vector<ThinId>{5});
  st = pool_->Activate(5, kThinSize, Access::kReadWrite);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(*dm::BlockDevNum(pool_->DevicePath(5)), dm::GetInfo(ThinName(5))->dev);

  // Left suspended.
  ASSERT_TRUE(dm::Suspend(ThinName(5)).ok());
  EXPECT_EQ(*pool_->ListHalfMade(), std::vector<ThinId>{5});
  ASSERT_TRUE(pool_->Activate(5, kThinSize, Access::kReadWrite).ok());
  EXPECT_TRUE(pool_->ListHalfMade()->empty());
  EXPECT_FALSE(dm::GetInfo(ThinName(5))->suspended);
  EXPECT_TRUE(ReadsAs(pool_->DevicePath(5), 0, 4096, 0));
}

TEST_F(DmPoolVmTest, DiscardCompletesAPrivateDeviceACrashCutShort) {
  ASSERT_TRUE(pool_->CreateThin(6).ok());
  ASSERT_TRUE(pool_->Activate(6, kThinSize, Access::kReadWrite).ok());
  WriteAt(pool_->DevicePath(6), 0, 1 * kMiB, 'd');
  ASSERT_TRUE(pool_->Deactivate(6).ok());
  const uint64_t used = pool_->QueryStatus()->data_used_blocks;

  // Killed inside the reclaim's private activation, after DM_DEVICE_CREATE.
  const std::string hidden = pool_name_ + "-reclaim-6";
  CreateBareDevice(hidden);
  Status st = pool_->DiscardInactive(6, kThinSize, std::vector<ByteRange>{{0, 1 * kMiB}});
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(dm::GetInfo(hidden)->exists);
  EXPECT_EQ(pool_->QueryStatus()->data_used_blocks, used - 16);

  // Withdrawn (renamed), but killed before the node moved.
  ASSERT_TRUE(pool_->Activate(6, kThinSize, Access::kReadWrite).ok());
  WriteAt(pool_->DevicePath(6), 0, 1 * kMiB, 'e');
  ASSERT_TRUE(pool_->Withdraw(6).ok());
  ASSERT_EQ(unlink(dm::MapperPath(hidden).c_str()), 0);
  st = pool_->DiscardInactive(6, kThinSize, std::vector<ByteRange>{{0, 1 * kMiB}});
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(dm::GetInfo(hidden)->exists);
  EXPECT_EQ(pool_->QueryStatus()->data_used_blocks, used - 16);
  EXPECT_TRUE(pool_->Delete(6).ok());
}

TEST_F(DmPoolVmTest, ConcurrentActivations) {
  constexpr int kThreads = 4, kPerThread = 8;
  for (ThinId id = 1; id <= kThreads * kPerThread; ++id) ASSERT_TRUE(pool_->CreateThin(id).ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < kPerThread; ++i) {
          ThinId id = static_cast<ThinId>(t * kPerThread + i + 1);
          if (!pool_->Activate(id, kThinSize, Access::kReadWrite).ok()) ++failures;
          if (!IsBlockNode(pool_->DevicePath(id))) ++failures;
        }
        for (int i = 0; i < kPerThread; ++i) {
          ThinId id = static_cast<ThinId>(t * kPerThread + i + 1);
          if (!pool_->Deactivate(id).ok()) ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(pool_->ListActive()->empty());
}

double MedianMs(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

TEST_F(DmPoolVmTest, Latency) {
  constexpr int kIters = 30;
  ASSERT_TRUE(pool_->CreateThin(1).ok());
  using Clock = std::chrono::steady_clock;
  std::vector<double> snap, activate, deactivate, del, cycle, status;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  for (int i = 0; i < kIters; ++i) {
    auto t0 = Clock::now();
    ASSERT_TRUE(pool_->CreateSnap(2, 1).ok());
    auto t1 = Clock::now();
    ASSERT_TRUE(pool_->Activate(2, kThinSize, Access::kReadWrite).ok());
    auto t2 = Clock::now();
    ASSERT_TRUE(pool_->Deactivate(2).ok());
    auto t3 = Clock::now();
    ASSERT_TRUE(pool_->Delete(2).ok());
    auto t4 = Clock::now();
    ASSERT_TRUE(pool_->QueryStatus().ok());
    auto t5 = Clock::now();
    snap.push_back(ms(t0, t1));
    activate.push_back(ms(t1, t2));
    deactivate.push_back(ms(t2, t3));
    del.push_back(ms(t3, t4));
    cycle.push_back(ms(t0, t4));
    status.push_back(ms(t4, t5));
  }
  // The same remove without DmPool's flush, to show what the flush costs.
  std::vector<double> raw_remove;
  for (int i = 0; i < kIters; ++i) {
    ASSERT_TRUE(pool_->Activate(1, kThinSize, Access::kReadWrite).ok());
    auto t0 = Clock::now();
    ASSERT_TRUE(dm::Remove(ThinName(1)).ok());
    raw_remove.push_back(ms(t0, Clock::now()));
  }
  std::vector<double> list;
  for (int i = 0; i < 5; ++i) {
    auto t0 = Clock::now();
    ASSERT_TRUE(pool_->ListThinIds().ok());
    list.push_back(ms(t0, Clock::now()));
  }
  printf(
      "dm_pool latency medians over %d iterations (ms): create_snap %.2f, activate %.2f, "
      "deactivate %.2f (dm remove alone %.2f), delete %.2f, cycle %.2f, query_status %.2f, "
      "list_thin_ids %.2f\n",
      kIters, MedianMs(snap), MedianMs(activate), MedianMs(deactivate), MedianMs(raw_remove),
      MedianMs(del), MedianMs(cycle), MedianMs(status), MedianMs(list));
}

}  // namespace
}  // namespace thinsnap
