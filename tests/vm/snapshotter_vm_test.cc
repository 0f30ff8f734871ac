// The Snapshotter on a real dm-thin pool, inside the test VM.
//
// Each test provisions its own loop-backed pool with thinsnapctl, opens the
// production stack (SQLite store, DmPool, ext4 via mkfs/libext2fs) and checks
// what containerd relies on: content survives Commit, children see it,
// isolation holds, views refuse writes, long chains work, no thin id leaks,
// restarts keep everything, and thin_check is clean afterwards.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "base/subprocess.h"
#include "pool/dm_pool.h"
#include "snapshot/snapshotter.h"

namespace thinsnap {
namespace {

namespace fs = std::filesystem;

std::string RunOk(const std::vector<std::string>& argv) {
  auto out = RunCommand(argv);
  EXPECT_TRUE(out.ok()) << argv[0] << ": " << out.status().ToString();
  if (!out.ok()) return "";
  EXPECT_EQ(out->exit_code, 0) << argv[0] << " " << (argv.size() > 1 ? argv[1] : "") << ": "
                               << out->out << out->err;
  return out->out;
}

// Mounts `m` at a fresh directory for the lifetime of the object.
class Mounted {
 public:
  Mounted(const Mount& m, const fs::path& dir) : dir_(dir) {
    fs::create_directories(dir_);
    unsigned long flags = 0;
    for (const auto& o : m.options) {
      if (o == "ro") flags |= MS_RDONLY;
    }
    ok_ = ::mount(m.source.c_str(), dir_.c_str(), m.type.c_str(), flags, nullptr) == 0;
    EXPECT_TRUE(ok_) << "mount " << m.source << ": " << strerror(errno);
  }
  ~Mounted() {
    if (ok_) {
      EXPECT_EQ(::umount(dir_.c_str()), 0) << strerror(errno);
    }
  }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
  bool ok_ = false;
};

void WriteFile(const fs::path& p, const std::string& content) {
  std::ofstream f(p);
  f << content;
  f.close();
  ASSERT_TRUE(f.good()) << p;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

class SnapshotterVmTest : public ::testing::Test {
 protected:
  void SetUp() override { Provision("2G", "64M"); }

  void Provision(const std::string& data_size, const std::string& meta_size,
                 SnapshotterOptions opts = {}) {
    ASSERT_EQ(geteuid(), 0u) << "needs root and device-mapper: run through tests/vm/run";
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::path("/tmp") / ("snapvm-" + test);
    pool_name_ = "snapvm-" + std::to_string(getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "pool");
    RunOk({THINSNAPCTL, "pool", "create", "--loop", "--dir", (dir_ / "pool").string(),
           "--data-size", data_size, "--meta-size", meta_size, "--name", pool_name_});
    provisioned_ = true;
    opts.base_size_bytes = 256ull << 20;
    opts_ = opts;
    Open();
  }

  void Open() {
    auto store = Store::Open((dir_ / "metadata.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto pool = OpenDmPool(pool_name_);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    auto s = Snapshotter::Open(std::move(store).value(), std::move(pool).value(),
                               MakeExtFilesystem("ext4", {}), opts_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    snap_ = std::move(s).value();
  }

  void TearDown() override {
    if (!provisioned_) return;
    if (snap_) {
      RemoveAll();
      snap_.reset();
    }
    // Only the base device may remain, and the metadata must be consistent.
    auto pool = OpenDmPool(pool_name_);
    if (pool.ok()) {
      auto ids = (*pool)->ListThinIds();
      ASSERT_TRUE(ids.ok());
      EXPECT_EQ(ids->size(), 1u) << "thin ids leaked";
      auto active = (*pool)->ListActive();
      ASSERT_TRUE(active.ok());
      EXPECT_TRUE(active.value().empty()) << "devices left active";
    }
    RunOk({THINSNAPCTL, "pool", "destroy", "--dir", (dir_ / "pool").string()});
    // thin_check uses O_DIRECT, which tmpfs refuses: check through a loop.
    std::string loop =
        RunOk({"losetup", "--find", "--show", (dir_ / "pool" / "meta.img").string()});
    while (!loop.empty() && loop.back() == '\n') loop.pop_back();
    RunOk({"thin_check", loop});
    RunOk({"losetup", "-d", loop});
    fs::remove_all(dir_);
  }

  void RemoveAll() {
    // Leaves first, until nothing is left.
    for (int round = 0; round < 200; ++round) {
      std::vector<std::string> keys;
      std::set<std::string> parents;
      ASSERT_TRUE(snap_
                      ->Walk({},
                             [&](const Info& i) {
                               keys.push_back(i.name);
                               parents.insert(i.parent);
                               return Status::Ok();
                             })
                      .ok());
      if (keys.empty()) return;
      for (const auto& k : keys) {
        if (!parents.count(k)) {
          ASSERT_TRUE(snap_->Remove(k).ok()) << k;
        }
      }
    }
    FAIL() << "could not remove every snapshot";
  }

  Mount MustPrepare(const std::string& key, const std::string& parent = "") {
    auto m = snap_->Prepare(key, parent, {});
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? (*m)[0] : Mount{};
  }

  std::set<ThinId> PoolIds() {
    auto pool = OpenDmPool(pool_name_);
    EXPECT_TRUE(pool.ok());
    auto ids = (*pool)->ListThinIds();
    EXPECT_TRUE(ids.ok());
    return std::set<ThinId>(ids->begin(), ids->end());
  }

  fs::path dir_;
  std::string pool_name_;
  bool provisioned_ = false;
  SnapshotterOptions opts_;
  std::unique_ptr<Snapshotter> snap_;
};

TEST_F(SnapshotterVmTest, MountsAreOneBlockDevice) {
  Mount m = MustPrepare("active");
  struct stat st;
  ASSERT_EQ(stat(m.source.c_str(), &st), 0) << m.source;
  EXPECT_TRUE(S_ISBLK(st.st_mode));
  EXPECT_EQ(m.type, "ext4");
  EXPECT_EQ(m.options, std::vector<std::string>{"rw"});
  EXPECT_EQ(m.source.rfind("/dev/mapper/", 0), 0u);
  {
    Mounted mnt(m, dir_ / "m");
    // A fresh snapshot looks like an empty directory (no lost+found).
    EXPECT_TRUE(fs::is_empty(mnt.dir()));
  }
  ASSERT_TRUE(snap_->Commit("layer", "active", {}).ok());
  auto v = snap_->View("view", "layer", {});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ((*v)[0].options, std::vector<std::string>{"ro"});
  ASSERT_EQ(stat((*v)[0].source.c_str(), &st), 0);
  EXPECT_TRUE(S_ISBLK(st.st_mode));
}

TEST_F(SnapshotterVmTest, ContentSurvivesCommitAndChildrenAreIsolated) {
  {
    Mounted m(MustPrepare("a"), dir_ / "a");
    WriteFile(m.dir() / "hello", "from layer one");
  }
  ASSERT_TRUE(snap_->Commit("layer1", "a", {}).ok());
  {
    Mounted m(MustPrepare("child", "layer1"), dir_ / "child");
    EXPECT_EQ(ReadFile(m.dir() / "hello"), "from layer one");
    WriteFile(m.dir() / "hello", "changed in child");
    WriteFile(m.dir() / "child-only", "x");
  }
  {
    auto v = snap_->View("view", "layer1", {});
    ASSERT_TRUE(v.ok());
    Mounted m((*v)[0], dir_ / "view");
    EXPECT_EQ(ReadFile(m.dir() / "hello"), "from layer one");
    EXPECT_FALSE(fs::exists(m.dir() / "child-only"));
    int fd = open((m.dir() / "new").c_str(), O_CREAT | O_WRONLY, 0644);
    EXPECT_LT(fd, 0);
    EXPECT_EQ(errno, EROFS);
    if (fd >= 0) close(fd);
  }
  auto usage = snap_->GetUsage("layer1");
  ASSERT_TRUE(usage.ok());
  EXPECT_GT(usage->inodes, 0);
}

TEST_F(SnapshotterVmTest, UsageCountsOwnBlocks) {
  {
    Mounted m(MustPrepare("a"), dir_ / "a");
    WriteFile(m.dir() / "f", "base");
  }
  ASSERT_TRUE(snap_->Commit("base", "a", {}).ok());
  Mount child = MustPrepare("child", "base");
  {
    Mounted m(child, dir_ / "child");
    std::string blob(8 << 20, 'z');
    WriteFile(m.dir() / "blob", blob);
    ::sync();
  }
  auto u = snap_->GetUsage("child");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_GE(u->size, 8 << 20);
  EXPECT_LT(u->size, 16 << 20);
  EXPECT_GE(u->inodes, 12);
  ASSERT_TRUE(snap_->Commit("child-c", "child", {}).ok());
  EXPECT_EQ(snap_->GetUsage("child-c")->size, u->size);
}

// Commit discards only the unused ranges the layer's device maps (read from a metadata
// snapshot). That must still give back what the layer wrote and freed, and drop its references to
// what it deleted from its parent.
TEST_F(SnapshotterVmTest, CommitGivesBackWhatTheLayerFreed) {
  {
    Mounted m(MustPrepare("a"), dir_ / "a");
    WriteFile(m.dir() / "inherited", std::string(8 << 20, 'p'));
  }
  ASSERT_TRUE(snap_->Commit("base", "a", {}).ok());
  auto pool = OpenDmPool(pool_name_);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  auto used_bytes = [&] {
    auto st = (*pool)->QueryStatus();
    EXPECT_TRUE(st.ok());
    return st.ok() ? st->data_used_blocks * st->data_block_bytes : 0;
  };
  const uint64_t before = used_bytes();
  {
    Mounted m(MustPrepare("child", "base"), dir_ / "child");
    WriteFile(m.dir() / "kept", "kept");
    WriteFile(m.dir() / "scratch", std::string(32 << 20, 's'));
    ::sync();
    fs::remove(m.dir() / "scratch");
    fs::remove(m.dir() / "inherited");
  }
  EXPECT_GE(used_bytes(), before + (32 << 20));
  ASSERT_TRUE(snap_->Commit("child-c", "child", {}).ok());
  // The scratch file's 32 MiB went back to the pool; what is left is the layer's own metadata.
  EXPECT_LT(used_bytes(), before + (4 << 20));
  // Mapped bytes of each committed layer, through a view of it (the same mappings).
  auto mapped_bytes = [&](const std::string& view, const std::string& parent) -> uint64_t {
    auto m = snap_->View(view, parent, {});
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (!m.ok()) return 0;
    const std::string& source = (*m)[0].source;
    const ThinId id = static_cast<ThinId>(std::stoul(source.substr(source.rfind('-') + 1)));
    auto bytes = (*pool)->MappedBytes(id);
    EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
    return bytes.ok() ? *bytes : 0;
  };
  const uint64_t parent_mapped = mapped_bytes("base-view", "base");
  const uint64_t child_mapped = mapped_bytes("child-view", "child-c");
  EXPECT_LT(child_mapped + (6 << 20), parent_mapped)
      << "the child still maps the parent's file it deleted";
  Mounted v(MustPrepare("check", "child-c"), dir_ / "check");
  EXPECT_EQ(ReadFile(v.dir() / "kept"), "kept");
  EXPECT_FALSE(fs::exists(v.dir() / "inherited"));
}

TEST_F(SnapshotterVmTest, ChainOf128Layers) {
  std::string parent;
  for (int i = 0; i < 128; ++i) {
    const std::string key = "layer-" + std::to_string(i) + "-active";
    {
      Mounted m(MustPrepare(key, parent), dir_ / "m");
      WriteFile(m.dir() / ("f" + std::to_string(i)), std::to_string(i));
    }
    parent = "layer-" + std::to_string(i);
    ASSERT_TRUE(snap_->Commit(parent, key, {}).ok()) << i;
  }
  Mounted top(MustPrepare("top", parent), dir_ / "top");
  for (int i = 0; i < 128; ++i) {
    EXPECT_EQ(ReadFile(top.dir() / ("f" + std::to_string(i))), std::to_string(i)) << i;
  }
}

TEST_F(SnapshotterVmTest, TwoHundredSnapshotsLeakNoThinId) {
  {
    Mounted m(MustPrepare("a"), dir_ / "a");
    WriteFile(m.dir() / "f", "x");
  }
  ASSERT_TRUE(snap_->Commit("base", "a", {}).ok());
  for (int i = 0; i < 200; ++i) {
    const std::string key = "s" + std::to_string(i);
    if (i % 3 == 0) {
      ASSERT_TRUE(snap_->View(key, "base", {}).ok());
    } else {
      MustPrepare(key, "base");
    }
    if (i % 2 == 0) {
      ASSERT_TRUE(snap_->Commit(key + "-c", key, {}).ok() || i % 3 == 0);
    }
  }
  EXPECT_EQ(PoolIds().size(), 1u + 1u + 200u);  // base device, "base", 200 snapshots
  RemoveAll();
  ASSERT_TRUE(snap_->Cleanup().ok());  // waits for the background reclaim
  EXPECT_EQ(PoolIds().size(), 1u);
}

TEST_F(SnapshotterVmTest, RestartKeepsSnapshotsAndReactivatesDevices) {
  {
    Mounted m(MustPrepare("a"), dir_ / "a");
    WriteFile(m.dir() / "f", "kept");
  }
  ASSERT_TRUE(snap_->Commit("base", "a", {{"k", "v"}}).ok());
  Mount active = MustPrepare("active", "base");
  ASSERT_TRUE(snap_->View("view", "base", {}).ok());
  snap_.reset();
  // A reboot: every thin device is gone.
  {
    auto pool = OpenDmPool(pool_name_);
    ASSERT_TRUE(pool.ok());
    auto active = (*pool)->ListActive();
    ASSERT_TRUE(active.ok());
    for (ThinId id : active.value()) ASSERT_TRUE((*pool)->Deactivate(id).ok());
  }
  Open();
  EXPECT_EQ(snap_->Stat("base")->labels.at("k"), "v");
  auto m = snap_->Mounts("active");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)[0].source, active.source);
  Mounted mnt((*m)[0], dir_ / "active");
  EXPECT_EQ(ReadFile(mnt.dir() / "f"), "kept");
}

class FullPoolVmTest : public SnapshotterVmTest {
 protected:
  void SetUp() override {
    SnapshotterOptions opts;
    opts.min_free_space_percent = 10;
    Provision("192M", "16M", opts);
  }
};

TEST_F(FullPoolVmTest, WriterGetsEnospcAndRemoveFreesSpace) {
  Mount m = MustPrepare("filler");
  {
    Mounted mnt(m, dir_ / "filler");
    // dd with direct I/O into a file larger than the pool: with
    // error_if_no_space the writer gets an error instead of hanging.
    auto out = RunCommand({"dd", "if=/dev/zero", "of=" + (mnt.dir() / "big").string(), "bs=1M",
                           "count=256", "oflag=direct", "status=none"},
                          RunOptions{std::chrono::seconds(60), {}, {}});
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_NE(out->exit_code, 0) << "a 256 MiB write into a 192 MiB pool must fail";
  }
  auto refused = snap_->Prepare("next", "", {});
  EXPECT_EQ(refused.status().code(), Code::kResourceExhausted) << refused.status().ToString();
  ASSERT_TRUE(snap_->Remove("filler").ok());
  auto again = snap_->Prepare("next", "", {});
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

class TinyMetadataVmTest : public SnapshotterVmTest {
 protected:
  void SetUp() override {
    Provision("1G", "2M");
    // Set the guard a few dozen metadata blocks above today's use, so the
    // test reaches it in tens of snapshots rather than thousands under TCG.
    auto pool = OpenDmPool(pool_name_);
    ASSERT_TRUE(pool.ok());
    auto st = (*pool)->QueryStatus();
    ASSERT_TRUE(st.ok());
    const double total = static_cast<double>(st->meta_total_blocks);
    const double free_now = 100.0 * (total - static_cast<double>(st->meta_used_blocks)) / total;
    snap_.reset();
    opts_.min_free_space_percent = free_now - 100.0 * 40 / total;
    ASSERT_GT(opts_.min_free_space_percent, 0);
    Open();
  }
};

TEST_F(TinyMetadataVmTest, PrepareStopsBeforeMetadataRunsOut) {
  {
    Mounted m(MustPrepare("a"), dir_ / "a");
    WriteFile(m.dir() / "f", "x");
  }
  ASSERT_TRUE(snap_->Commit("base", "a", {}).ok());
  // Each snapshot (with a few written blocks) costs metadata; the
  // min_free_space_percent guard must refuse before the pool is full.
  int created = 0;
  Status last;
  for (; created < 1000; ++created) {
    const std::string key = "s" + std::to_string(created);
    auto m = snap_->Prepare(key, "base", {});
    if (!m.ok()) {
      last = m.status();
      break;
    }
    if (created % 4 == 0) {
      Mounted mnt((*m)[0], dir_ / "w");
      WriteFile(mnt.dir() / "f", std::string(1 << 20, 'y'));
    }
    ASSERT_TRUE(snap_->Commit(key + "-c", key, {}).ok());
  }
  ASSERT_EQ(last.code(), Code::kResourceExhausted) << last.ToString() << " after " << created;
  EXPECT_NE(last.message().find("metadata"), std::string::npos) << last.ToString();
  EXPECT_GT(created, 2);
  // Nothing is stuck: removing snapshots frees metadata and Prepare works again.
  for (int i = 0; i < created; ++i) {
    ASSERT_TRUE(snap_->Remove("s" + std::to_string(i) + "-c").ok());
  }
  auto again = snap_->Prepare("again", "base", {});
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

}  // namespace
}  // namespace thinsnap
