#include "snapshot/snapshotter.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "fake/fake_pool.h"

namespace thinsnap {
namespace {

using testing::FakePoolControl;

class SnapshotterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("snapshotter-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    pool_ = testing::MakeFakePoolState();
    Reopen();
  }
  void TearDown() override {
    snap_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Simulates a daemon restart over the same database and the same pool.
  void Reopen(SnapshotterOptions opts = {}) {
    snap_.reset();
    auto s = OpenFresh(opts);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    snap_ = std::move(s).value();
  }
  Result<std::unique_ptr<Snapshotter>> OpenFresh(SnapshotterOptions opts = {}) {
    auto store = Store::Open((dir_ / "metadata.db").string());
    if (!store.ok()) return store.status();
    return Snapshotter::Open(std::move(store).value(), testing::MakeFakePool(pool_),
                             testing::MakeFakeFilesystem(fs_), opts);
  }

  void MustPrepare(const std::string& key, const std::string& parent = "") {
    auto m = snap_->Prepare(key, parent, {});
    ASSERT_TRUE(m.ok()) << m.status().ToString();
  }
  void MustCommit(const std::string& name, const std::string& key) {
    Status st = snap_->Commit(name, key, {});
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  std::vector<std::string> Keys() {
    std::vector<std::string> keys;
    EXPECT_TRUE(snap_
                    ->Walk({},
                           [&](const Info& i) {
                             keys.push_back(i.name);
                             return Status::Ok();
                           })
                    .ok());
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  std::filesystem::path dir_;
  std::shared_ptr<FakePoolControl> pool_;
  std::shared_ptr<testing::FakeFilesystemControl> fs_ =
      std::make_shared<testing::FakeFilesystemControl>();
  std::unique_ptr<Snapshotter> snap_;
};

TEST_F(SnapshotterTest, OpenCreatesOneInactiveBaseDevice) {
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
  EXPECT_TRUE(pool_->ActiveIds().empty());
  Reopen();  // the base is made once per pool, not per start
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
}

TEST_F(SnapshotterTest, PrepareReturnsOneRwBlockMount) {
  auto m = snap_->Prepare("a", "", {{"x", "y"}});
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ((*m)[0].type, "ext4");
  EXPECT_EQ((*m)[0].source, "/dev/mapper/fake-thin-1");
  EXPECT_EQ((*m)[0].options, std::vector<std::string>{"rw"});
  EXPECT_EQ(pool_->ActiveIds(), std::vector<ThinId>{1});
  auto info = snap_->Stat("a");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, Kind::kActive);
  EXPECT_EQ(info->labels.at("x"), "y");
  EXPECT_GT(info->created_ns, 0);
  auto again = snap_->Mounts("a");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].source, (*m)[0].source);
}

TEST_F(SnapshotterTest, ViewIsReadOnlyAndCannotBeCommitted) {
  MustPrepare("a");
  MustCommit("base", "a");
  auto m = snap_->View("v", "base", {});
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)[0].options, std::vector<std::string>{"ro"});
  EXPECT_EQ(snap_->Stat("v")->kind, Kind::kView);
  EXPECT_EQ(snap_->Commit("c", "v", {}).code(), Code::kFailedPrecondition);
  EXPECT_EQ(snap_->Mounts("base").status().code(), Code::kFailedPrecondition);
}

TEST_F(SnapshotterTest, ParentRules) {
  MustPrepare("active");
  EXPECT_EQ(snap_->Prepare("c", "missing", {}).status().code(), Code::kNotFound);
  EXPECT_EQ(snap_->Prepare("c", "active", {}).status().code(), Code::kInvalidArgument);
  MustCommit("committed", "active");
  ASSERT_TRUE(snap_->View("view", "committed", {}).ok());
  EXPECT_EQ(snap_->Prepare("c", "view", {}).status().code(), Code::kInvalidArgument);
  // Failures changed nothing: base + committed + view.
  EXPECT_EQ(pool_->ThinIds().size(), 3u);
  EXPECT_EQ(Keys(), (std::vector<std::string>{"committed", "view"}));
}

TEST_F(SnapshotterTest, KeysAreUniqueAcrossKinds) {
  MustPrepare("a");
  MustCommit("c", "a");
  ASSERT_TRUE(snap_->View("v", "c", {}).ok());
  MustPrepare("p", "c");
  const auto ids = pool_->ThinIds();
  for (const std::string key : {"c", "v", "p"}) {
    EXPECT_EQ(snap_->Prepare(key, "", {}).status().code(), Code::kAlreadyExists) << key;
    EXPECT_EQ(snap_->View(key, "c", {}).status().code(), Code::kAlreadyExists) << key;
  }
  EXPECT_EQ(snap_->Commit("v", "p", {}).code(), Code::kAlreadyExists);
  EXPECT_EQ(pool_->ThinIds(), ids);
  EXPECT_EQ(snap_->Stat("p")->kind, Kind::kActive);
  // p (thin id 3: after the base, a and v) is still active.
  const auto active = pool_->ActiveIds();
  EXPECT_NE(std::find(active.begin(), active.end(), 3u), active.end());
}

TEST_F(SnapshotterTest, CommitDeactivatesAndRecordsUsage) {
  MustPrepare("a");
  pool_->SetMappedBytes(1, 4096 * 10);
  ASSERT_TRUE(snap_->Commit("base", "a", {{"c", "1"}}).ok());
  EXPECT_TRUE(pool_->ActiveIds().empty());
  EXPECT_EQ(snap_->Stat("a").status().code(), Code::kNotFound);
  auto info = snap_->Stat("base");
  EXPECT_EQ(info->kind, Kind::kCommitted);
  EXPECT_EQ(info->labels, (Labels{{"c", "1"}}));
  auto usage = snap_->GetUsage("base");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->size, 4096 * 10);
  EXPECT_EQ(usage->inodes, 11);
  // A child's usage is what it maps beyond its parent.
  MustPrepare("child", "base");
  pool_->SetMappedBytes(2, 4096 * 13);
  EXPECT_EQ(snap_->GetUsage("child")->size, 4096 * 3);
  EXPECT_EQ(snap_->Commit("x", "missing", {}).code(), Code::kNotFound);
  EXPECT_EQ(snap_->Commit("y", "base", {}).code(), Code::kFailedPrecondition);
}

TEST_F(SnapshotterTest, CommitOfMountedDeviceSchedulesDeferredRemoval) {
  MustPrepare("a");
  pool_->SetOpen(1, true);
  ASSERT_TRUE(snap_->Commit("c", "a", {}).ok());
  EXPECT_EQ(snap_->Stat("c")->kind, Kind::kCommitted);
}

TEST_F(SnapshotterTest, RemoveRefusesParentsAndFreesIds) {
  MustPrepare("a");
  MustCommit("base", "a");
  MustPrepare("child", "base");
  EXPECT_EQ(snap_->Remove("base").code(), Code::kFailedPrecondition);
  EXPECT_EQ(snap_->Remove("missing").code(), Code::kNotFound);
  ASSERT_TRUE(snap_->Remove("child").ok());
  ASSERT_TRUE(snap_->Remove("base").ok());
  ASSERT_TRUE(snap_->Cleanup().ok());  // waits for the background reclaim
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
  EXPECT_TRUE(pool_->ActiveIds().empty());
  // Freed ids are not handed out again soon: the next one is new.
  MustPrepare("again");
  EXPECT_EQ(pool_->ActiveIds(), std::vector<ThinId>{3});
}

// A device path read from Mounts never names another snapshot's device soon
// after, and the round-robin survives a restart.
TEST_F(SnapshotterTest, ARemovedSnapshotsDevicePathIsNotReused) {
  MustPrepare("a");
  const std::string old_source = snap_->Mounts("a")->at(0).source;
  ASSERT_TRUE(snap_->Remove("a").ok());
  ASSERT_TRUE(snap_->Cleanup().ok());
  Reopen(SnapshotterOptions{});
  for (int i = 0; i < 50; ++i) {
    const std::string key = "k" + std::to_string(i);
    MustPrepare(key);
    EXPECT_NE(snap_->Mounts(key)->at(0).source, old_source) << key;
  }
}

// Remove and Commit of one snapshot take turns: exactly one wins, and the
// loser sees the winner's result.
TEST_F(SnapshotterTest, RemoveAndCommitOfOneSnapshotAreSerialised) {
  for (int i = 0; i < 20; ++i) {
    const std::string key = "a" + std::to_string(i);
    const std::string name = "c" + std::to_string(i);
    MustPrepare(key);
    Status removed, committed;
    std::thread remover([&] { removed = snap_->Remove(key); });
    std::thread committer([&] { committed = snap_->Commit(name, key, {}); });
    remover.join();
    committer.join();
    ASSERT_NE(removed.ok(), committed.ok()) << removed.ToString() << " / " << committed.ToString();
    if (removed.ok()) {
      EXPECT_EQ(committed.code(), Code::kNotFound) << committed.ToString();
      EXPECT_EQ(snap_->Stat(name).status().code(), Code::kNotFound);
    } else {
      EXPECT_EQ(removed.code(), Code::kNotFound) << removed.ToString();
      EXPECT_EQ(snap_->Stat(name)->kind, Kind::kCommitted);
      ASSERT_TRUE(snap_->Remove(name).ok());
    }
  }
  ASSERT_TRUE(snap_->Cleanup().ok());
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
}

// The size recorded for `key`, read through a second connection.
uint64_t RecordedSize(const std::filesystem::path& dir, const std::string& key) {
  auto store = Store::Open((dir / "metadata.db").string());
  EXPECT_TRUE(store.ok());
  auto r = (*store)->Get(key);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->size_bytes : 0;
}

TEST_F(SnapshotterTest, MaxSizeLabelGrowsTheSnapshotAndItsChildren) {
  const uint64_t base = SnapshotterOptions{}.base_size_bytes;
  const std::string twice = std::to_string(2 * base);
  auto m = snap_->Prepare("big", "", {{"containerd.io/snapshot/max-size", twice}});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(RecordedSize(dir_, "big"), 2 * base);
  // Stat shows the label as given.
  EXPECT_EQ(snap_->Stat("big")->labels.at("containerd.io/snapshot/max-size"), twice);
  MustCommit("big-c", "big");
  // A child keeps its parent's size; a smaller hint cannot shrink it.
  MustPrepare("child", "big-c");
  EXPECT_EQ(RecordedSize(dir_, "child"), 2 * base);
  ASSERT_TRUE(snap_->View("v", "big-c", {{"containerd.io/snapshot/max-size", "4096"}}).ok());
  EXPECT_EQ(RecordedSize(dir_, "v"), 2 * base);
  // Sizes round up to whole 4 KiB blocks.
  ASSERT_TRUE(
      snap_->Prepare("odd", "", {{"containerd.io/snapshot/max-size", std::to_string(base + 1)}})
          .ok());
  EXPECT_EQ(RecordedSize(dir_, "odd"), base + 4096);
  MustPrepare("plain");
  EXPECT_EQ(RecordedSize(dir_, "plain"), base);
}

// Sized Prepares and Views of one origin share one grow (grown_origins.h).
TEST_F(SnapshotterTest, SizedSnapshotsOfOneOriginAndSizeShareOneGrow) {
  const uint64_t base = SnapshotterOptions{}.base_size_bytes;
  const Labels twice = {{"containerd.io/snapshot/max-size", std::to_string(2 * base)}};
  MustPrepare("a");
  MustCommit("layer", "a");
  for (const std::string key : {"p1", "p2", "p3"}) {
    ASSERT_TRUE(snap_->Prepare(key, "layer", twice).ok()) << key;
    EXPECT_EQ(RecordedSize(dir_, key), 2 * base);
  }
  ASSERT_TRUE(snap_->View("v", "layer", twice).ok());
  EXPECT_EQ(fs_->grows, 1);
  // base, layer, the grown origin and four snapshots.
  EXPECT_EQ(pool_->ThinIds().size(), 7u);
  // Another size, another origin (the base) each grow once more.
  const Labels thrice = {{"containerd.io/snapshot/max-size", std::to_string(3 * base)}};
  ASSERT_TRUE(snap_->Prepare("p4", "layer", thrice).ok());
  ASSERT_TRUE(snap_->Prepare("r1", "", twice).ok());
  ASSERT_TRUE(snap_->Prepare("r2", "", twice).ok());
  EXPECT_EQ(fs_->grows, 3);
  // Kept across a restart.
  Reopen();
  ASSERT_TRUE(snap_->Prepare("p5", "layer", twice).ok());
  EXPECT_EQ(fs_->grows, 3);
  EXPECT_EQ(RecordedSize(dir_, "p5"), 2 * base);
}

TEST_F(SnapshotterTest, GrownOriginsGoWithTheirOrigin) {
  const uint64_t base = SnapshotterOptions{}.base_size_bytes;
  const Labels twice = {{"containerd.io/snapshot/max-size", std::to_string(2 * base)}};
  MustPrepare("a");
  MustCommit("layer", "a");
  ASSERT_TRUE(snap_->Prepare("p", "layer", twice).ok());
  MustCommit("p-c", "p");
  ASSERT_TRUE(snap_->Prepare("q", "p-c", {}).ok());  // as large as its parent: no grow
  EXPECT_EQ(fs_->grows, 1);
  for (const std::string key : {"q", "p-c", "layer"}) ASSERT_TRUE(snap_->Remove(key).ok()) << key;
  ASSERT_TRUE(snap_->Cleanup().ok());
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
  Reopen();  // and the metadata agrees
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
}

TEST_F(SnapshotterTest, GrownOriginsBeyondCapacityAreRetiredLeastRecentlyUsedFirst) {
  SnapshotterOptions opts;
  opts.grown_origin_capacity = 2;
  Reopen(opts);
  const uint64_t base = opts.base_size_bytes;
  auto sized = [&](uint64_t times) {
    return Labels{{"containerd.io/snapshot/max-size", std::to_string(times * base)}};
  };
  ASSERT_TRUE(snap_->Prepare("x2", "", sized(2)).ok());
  ASSERT_TRUE(snap_->Prepare("x3", "", sized(3)).ok());
  ASSERT_TRUE(snap_->Prepare("y2", "", sized(2)).ok());  // 2x is now the most recently used
  ASSERT_TRUE(snap_->Prepare("x4", "", sized(4)).ok());  // retires 3x
  ASSERT_TRUE(snap_->Cleanup().ok());
  EXPECT_EQ(fs_->grows, 3);
  // base, two grown origins, four snapshots: the snapshot of the retired one keeps its device.
  EXPECT_EQ(pool_->ThinIds().size(), 7u);
  ASSERT_TRUE(snap_->Prepare("y3", "", sized(3)).ok());
  ASSERT_TRUE(snap_->Prepare("y4", "", sized(4)).ok());
  EXPECT_EQ(fs_->grows, 4);  // 3x again; 4x was kept
}

TEST_F(SnapshotterTest, AFailedGrowChangesNothing) {
  const uint64_t base = SnapshotterOptions{}.base_size_bytes;
  const Labels twice = {{"containerd.io/snapshot/max-size", std::to_string(2 * base)}};
  fs_->fail_next_grow = true;
  EXPECT_EQ(snap_->Prepare("p", "", twice).status().code(), Code::kInternal);
  EXPECT_TRUE(Keys().empty());
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
  EXPECT_TRUE(pool_->ActiveIds().empty());
  ASSERT_TRUE(snap_->Prepare("p", "", twice).ok());  // tried again
  EXPECT_EQ(fs_->grows, 1);
}

// Prepares racing for one (origin, size) wait for one grow.
TEST_F(SnapshotterTest, ConcurrentSizedPreparesGrowOnce) {
  const uint64_t base = SnapshotterOptions{}.base_size_bytes;
  const Labels twice = {{"containerd.io/snapshot/max-size", std::to_string(2 * base)}};
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      if (snap_->Prepare("p" + std::to_string(i), "", twice).ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 8);
  EXPECT_EQ(fs_->grows, 1);
}

TEST_F(SnapshotterTest, BadMaxSizeLabelsAreRefusedAndChangeNothing) {
  SnapshotterOptions opts;
  opts.max_snapshot_size_bytes = 64ull << 30;
  Reopen(opts);
  for (const std::string& bad :
       {std::string(), std::string("0"), std::string("-1"), std::string("12k"), std::string(" 1"),
        std::string("1e9"), std::string("99999999999999999999999"),
        std::to_string((64ull << 30) + 1)}) {
    auto m = snap_->Prepare("x", "", {{"containerd.io/snapshot/max-size", bad}});
    EXPECT_EQ(m.status().code(), Code::kInvalidArgument) << "'" << bad << "'";
    auto v = snap_->View("x", "", {{"containerd.io/snapshot/max-size", bad}});
    EXPECT_EQ(v.status().code(), Code::kInvalidArgument) << "'" << bad << "'";
  }
  EXPECT_TRUE(Keys().empty());
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
}

TEST_F(SnapshotterTest, RemoveDiscardsTheDeviceBeforeDeletingIt) {
  MustPrepare("a");
  MustCommit("layer", "a");
  MustPrepare("b", "layer");
  ASSERT_TRUE(snap_->View("v", "layer", {}).ok());
  pool_->SetOwnRanges(1, {{0, 64 << 10}});
  pool_->SetOwnRanges(2, {{1 << 20, 128 << 10}});
  ASSERT_TRUE(snap_->Remove("b").ok());
  ASSERT_TRUE(snap_->Remove("v").ok());
  ASSERT_TRUE(snap_->Remove("layer").ok());
  ASSERT_TRUE(snap_->Cleanup().ok());
  // Only what each device wrote itself; the view (3) wrote nothing.
  EXPECT_EQ(pool_->DiscardedIds(), (std::vector<ThinId>{2, 1}));
  EXPECT_EQ(pool_->DiscardedRanges(2), (std::vector<ByteRange>{{1 << 20, 128 << 10}}));
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
}

TEST_F(SnapshotterTest, ADeviceThatNeverWroteIsDeletedWithoutADiscard) {
  MustPrepare("a");
  ASSERT_TRUE(snap_->Remove("a").ok());
  ASSERT_TRUE(snap_->Cleanup().ok());
  EXPECT_TRUE(pool_->DiscardedIds().empty());
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
}

TEST_F(SnapshotterTest, CloseFinishesAnsweredRemovals) {
  MustPrepare("a");
  MustCommit("layer", "a");
  ASSERT_TRUE(snap_->Remove("layer").ok());
  snap_->Close();
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
  EXPECT_EQ(snap_->Stat("layer").status().code(), Code::kUnavailable);
}

TEST_F(SnapshotterTest, DiscardsOffDeletesWithoutDiscarding) {
  SnapshotterOptions opts;
  opts.discard_unused_blocks = false;
  Reopen(opts);
  MustPrepare("a");
  MustCommit("layer", "a");
  ASSERT_TRUE(snap_->Remove("layer").ok());
  ASSERT_TRUE(snap_->Cleanup().ok());
  EXPECT_TRUE(pool_->DiscardedIds().empty());
  EXPECT_TRUE(pool_->DiscardedRanges(1).empty());
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
}

TEST_F(SnapshotterTest, CommitTrimsWhatTheFilesystemDoesNotUse) {
  MustPrepare("a");
  MustCommit("layer", "a");
  // The fake filesystem reports one unused range, aligned to the pool block.
  EXPECT_EQ(pool_->DiscardedRanges(1), (std::vector<ByteRange>{{64 << 10, 256 << 10}}));
}

TEST_F(SnapshotterTest, CommitOfAMountedDeviceTrimsNothing) {
  MustPrepare("a");
  pool_->SetOpen(1, true);
  MustCommit("layer", "a");
  EXPECT_TRUE(pool_->DiscardedRanges(1).empty());
}

TEST_F(SnapshotterTest, RemoveOfBusyDeviceSucceedsAndCleanupFinishesIt) {
  MustPrepare("a");
  pool_->SetOpen(1, true);
  pool_->SetOwnRanges(1, {{0, 64 << 10}});
  ASSERT_TRUE(snap_->Remove("a").ok());
  EXPECT_EQ(snap_->Stat("a").status().code(), Code::kNotFound);
  EXPECT_EQ(pool_->ThinIds().size(), 2u);  // still there, busy
  MustPrepare("b");                        // the busy id is not reused
  EXPECT_EQ(snap_->Mounts("b")->at(0).source, "/dev/mapper/fake-thin-2");
  // Still open: kept, untouched, and Cleanup says so.
  Status busy = snap_->Cleanup();
  EXPECT_EQ(busy.code(), Code::kFailedPrecondition) << busy.ToString();
  EXPECT_NE(busy.message().find("1 removed snapshot device(s)"), std::string::npos)
      << busy.ToString();
  EXPECT_EQ(pool_->ThinIds().size(), 3u);
  EXPECT_EQ(pool_->ActiveIds(), (std::vector<ThinId>{1, 2}));
  EXPECT_TRUE(pool_->DiscardedIds().empty());
  pool_->SetOpen(1, false);
  ASSERT_TRUE(snap_->Cleanup().ok());
  EXPECT_EQ(pool_->DiscardedIds(), std::vector<ThinId>{1});
  EXPECT_EQ(pool_->ThinIds(), (std::vector<ThinId>{0, 2}));
}

TEST_F(SnapshotterTest, AsyncRemoveDefersDeletionToCleanup) {
  SnapshotterOptions opts;
  opts.async_remove = true;
  Reopen(opts);
  MustPrepare("a");
  ASSERT_TRUE(snap_->Remove("a").ok());
  EXPECT_EQ(pool_->ThinIds().size(), 2u);
  ASSERT_TRUE(snap_->Cleanup().ok());
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
}

TEST_F(SnapshotterTest, UpdateChangesLabelsOnly) {
  MustPrepare("a");
  ASSERT_TRUE(snap_->Update({"a", "", Kind::kActive, {{"x", "1"}, {"y", "2"}}}, {}).ok());
  Info in{"a", "", Kind::kActive, {{"x", "9"}, {"z", "3"}}};
  auto out = snap_->Update(in, {"labels.x", "labels.y"});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->labels, (Labels{{"x", "9"}}));  // y absent in `in`: deleted
  out = snap_->Update(in, {"labels"});
  EXPECT_EQ(out->labels, in.labels);
  EXPECT_GE(out->updated_ns, out->created_ns);
  EXPECT_EQ(snap_->Update(in, {"parent"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(snap_->Update(in, {"name"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(snap_->Update({"missing", "", Kind::kActive, {}}, {}).status().code(), Code::kNotFound);
  EXPECT_EQ(snap_->Update({"a", "", Kind::kActive, {{"big", std::string(5000, 'x')}}}, {})
                .status()
                .code(),
            Code::kInvalidArgument);
  EXPECT_EQ(snap_->Stat("a")->labels, in.labels);
}

TEST_F(SnapshotterTest, WalkFilters) {
  MustPrepare("a");
  ASSERT_TRUE(snap_->Commit("layer1", "a", {{"containerd.io/gc.root", "1"}}).ok());
  MustPrepare("b", "layer1");
  ASSERT_TRUE(snap_->View("v", "layer1", {{"a.b", "c"}}).ok());
  auto names = [&](std::vector<std::string> filters) {
    std::vector<std::string> out;
    Status st = snap_->Walk(filters, [&](const Info& i) {
      out.push_back(i.name);
      return Status::Ok();
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(names({"kind==committed"}), std::vector<std::string>{"layer1"});
  EXPECT_EQ(names({"parent==layer1"}), (std::vector<std::string>{"b", "v"}));
  EXPECT_EQ(names({"parent==layer1,kind==view"}), std::vector<std::string>{"v"});
  EXPECT_EQ(names({"kind==view", "kind==committed"}), (std::vector<std::string>{"layer1", "v"}));
  EXPECT_EQ(names({"labels.\"a.b\"==c"}), std::vector<std::string>{"v"});
  EXPECT_EQ(names({"labels.\"containerd.io/gc.root\""}), std::vector<std::string>{"layer1"});
  EXPECT_EQ(names({"name~=^l"}), std::vector<std::string>{"layer1"});
  Status bad = snap_->Walk({"name=="}, [](const Info&) { return Status::Ok(); });
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
}

TEST_F(SnapshotterTest, InvalidInputChangesNothing) {
  MustPrepare("a");
  const auto ids = pool_->ThinIds();
  EXPECT_EQ(snap_->Prepare("", "", {}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(snap_->Prepare(std::string(4097, 'k'), "", {}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(snap_->Prepare(std::string("a\0b", 3), "", {}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(snap_->Prepare("k", "", {{"l", std::string(4096, 'v')}}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(snap_->Commit("", "a", {}).code(), Code::kInvalidArgument);
  EXPECT_EQ(snap_->Remove("").code(), Code::kInvalidArgument);
  EXPECT_EQ(pool_->ThinIds(), ids);
  EXPECT_EQ(Keys(), std::vector<std::string>{"a"});
}

TEST_F(SnapshotterTest, OddButValidKeysRoundTrip) {
  for (const std::string key : {"/", "..", "a b", "default/12/sha256:abc", "../../etc/passwd"}) {
    auto m = snap_->Prepare(key, "", {});
    ASSERT_TRUE(m.ok()) << key;
    EXPECT_EQ((*m)[0].source.find(key == "/" ? "//" : key), std::string::npos);
    EXPECT_EQ(snap_->Stat(key)->name, key);
  }
  const std::string long_key(4096, 'k');
  ASSERT_TRUE(snap_->Prepare(long_key, "", {}).ok());
  EXPECT_EQ(snap_->Stat(long_key)->name, long_key);
}

TEST_F(SnapshotterTest, PoolFailureRollsBackCompletely) {
  pool_->FailNextMessage(ENOSPC);
  EXPECT_EQ(snap_->Prepare("a", "", {}).status().code(), Code::kResourceExhausted);
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
  EXPECT_EQ(snap_->Stat("a").status().code(), Code::kNotFound);
  MustPrepare("a");  // the key is free again
  EXPECT_EQ(pool_->ActiveIds(), std::vector<ThinId>{2});
}

TEST_F(SnapshotterTest, MinimumFreeSpaceIsEnforced) {
  pool_->SetDataUsage(95, 100);
  auto r = snap_->Prepare("a", "", {});
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("free data space"), std::string::npos);
  pool_->SetDataUsage(50, 100);
  MustPrepare("a");
}

TEST_F(SnapshotterTest, RefusesToOpenPoolThatNeedsCheck) {
  snap_.reset();
  pool_->SetNeedsCheck(true);
  auto s = OpenFresh();
  EXPECT_EQ(s.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("needs_check"), std::string::npos);
}

TEST_F(SnapshotterTest, RestartRepairsCrashLeftovers) {
  MustPrepare("a");
  MustCommit("base", "a");
  MustPrepare("active", "base");
  ASSERT_TRUE(snap_->View("view", "base", {}).ok());
  snap_.reset();
  // A reboot: nothing is active. A crash left an orphan thin id 99, and a
  // half-made create (intent + pool device, never finished).
  auto raw = testing::MakeFakePool(pool_);
  for (ThinId id : pool_->ActiveIds()) ASSERT_TRUE(raw->Deactivate(id).ok());
  ASSERT_TRUE(raw->CreateThin(99).ok());
  {
    auto store = Store::Open((dir_ / "metadata.db").string());
    ASSERT_TRUE(store.ok());
    auto pending = (*store)->BeginCreate({"half", "base", Kind::kActive, 50, 1 << 30, {}, 1});
    ASSERT_TRUE(pending.ok());
    ASSERT_TRUE(raw->CreateSnap(50, 1).ok());
  }
  Reopen();
  EXPECT_EQ(pool_->ThinIds(), (std::vector<ThinId>{0, 1, 2, 3}));
  EXPECT_EQ(pool_->ActiveIds(), (std::vector<ThinId>{2, 3}));
  EXPECT_EQ(Keys(), (std::vector<std::string>{"active", "base", "view"}));
  MustPrepare("half", "base");  // the key was released
}

TEST_F(SnapshotterTest, RestartRefusesWhenSnapshotDevicesAreMissing) {
  MustPrepare("a");
  snap_.reset();
  auto raw = testing::MakeFakePool(pool_);
  ASSERT_TRUE(raw->Deactivate(1).ok());
  ASSERT_TRUE(raw->Delete(1).ok());
  auto s = OpenFresh();
  EXPECT_EQ(s.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("no thin device"), std::string::npos);
}

TEST_F(SnapshotterTest, ConcurrentPrepareOfOneKeyHasOneWinner) {
  std::atomic<int> wins{0}, exists{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      auto r = snap_->Prepare("same", "", {});
      if (r.ok()) ++wins;
      if (r.status().code() == Code::kAlreadyExists) ++exists;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins, 1);
  EXPECT_EQ(exists, 15);
  EXPECT_EQ(pool_->ThinIds().size(), 2u);
}

TEST_F(SnapshotterTest, ConcurrentIndependentOperationsStayConsistent) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
        ASSERT_TRUE(snap_->Prepare(key, "", {}).ok());
        ASSERT_TRUE(snap_->Commit(key + "-c", key, {}).ok());
        ASSERT_TRUE(snap_->Remove(key + "-c").ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(snap_->Cleanup().ok());
  EXPECT_EQ(pool_->ThinIds(), std::vector<ThinId>{0});
  EXPECT_TRUE(Keys().empty());
}

TEST_F(SnapshotterTest, CloseRejectsLaterCalls) {
  snap_->Close();
  EXPECT_EQ(snap_->Prepare("a", "", {}).status().code(), Code::kUnavailable);
  EXPECT_EQ(snap_->Stat("a").status().code(), Code::kUnavailable);
  snap_->Close();  // twice is fine
}

}  // namespace
}  // namespace thinsnap
