#include "snapshot/reconciler.h"

#include <gtest/gtest.h>

#include "fake/fake_pool.h"

namespace thinsnap {
namespace {

class ReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Store::Open(":memory:");
    ASSERT_TRUE(s.ok());
    store_ = std::move(s).value();
    state_ = testing::MakeFakePoolState();
    pool_ = testing::MakeFakePool(state_);
    // A committed layer (id 1) and an active child (id 2), as a clean daemon
    // would leave them.
    MakeSnapshot("layer", "", 1);
    ASSERT_TRUE(store_->Commit("layer", "layer-c", {}, {}, 1).ok());
    MakeSnapshot("child", "layer-c", 2);
    ASSERT_TRUE(pool_->Activate(2, 1 << 20, Access::kReadWrite).ok());
  }

  void MakeSnapshot(const std::string& key, const std::string& parent, ThinId id) {
    auto p = store_->BeginCreate({key, parent, Kind::kActive, id, 1 << 20, {}, 1});
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    ASSERT_TRUE(pool_->CreateThin(id).ok());
    ASSERT_TRUE(store_->FinishCreate(*p).ok());
  }

  ReconcileReport Run(bool repair) {
    Reconciler r(*store_, *pool_, ReclaimOptions{});
    auto report = r.Run(repair);
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? *report : ReconcileReport{};
  }

  std::unique_ptr<Store> store_;
  std::shared_ptr<testing::FakePoolControl> state_;
  std::unique_ptr<ThinPool> pool_;
};

TEST_F(ReconcilerTest, UnfinishedRemoveIsDiscardedThenDeleted) {
  // A crash between Remove (the intent) and the reclaim.
  ASSERT_TRUE(store_->BeginRemove("child").ok());
  state_->SetOwnRanges(2, {{0, 64 << 10}});
  ReconcileReport report = Run(true);
  EXPECT_EQ(report.unfinished_deletes, 1) << report.Summary();
  EXPECT_EQ(state_->DiscardedIds(), std::vector<ThinId>{2});
  EXPECT_EQ(state_->DiscardedRanges(2), (std::vector<ByteRange>{{0, 64 << 10}}));
  const auto ids = state_->ThinIds();
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2u), 0);
  EXPECT_TRUE(Run(false).clean());
}

TEST_F(ReconcilerTest, CleanStateReportsClean) {
  ReconcileReport report = Run(false);
  EXPECT_TRUE(report.clean()) << report.Summary();
  EXPECT_EQ(report.Summary(), "metadata and pool agree");
}

TEST_F(ReconcilerTest, ReportOnlyChangesNothing) {
  ASSERT_TRUE(pool_->CreateThin(7).ok());                            // orphan
  ASSERT_TRUE(pool_->Activate(1, 1 << 20, Access::kReadOnly).ok());  // committed, active
  ASSERT_TRUE(pool_->Deactivate(2).ok());                            // active snapshot, inactive
  auto pending = store_->BeginCreate({"half", "layer-c", Kind::kActive, 9, 1 << 20, {}, 1});
  ASSERT_TRUE(pending.ok());
  ASSERT_TRUE(pool_->CreateSnap(9, 1).ok());
  const auto ids = state_->ThinIds();
  const auto active = state_->ActiveIds();

  ReconcileReport report = Run(false);
  EXPECT_FALSE(report.clean());
  EXPECT_EQ(report.unfinished_creates, 1);
  EXPECT_EQ(report.orphan_ids, std::vector<ThinId>{7});
  EXPECT_EQ(report.stray_devices, std::vector<ThinId>{1});
  EXPECT_EQ(report.reactivated, std::vector<ThinId>{2});
  EXPECT_EQ(state_->ThinIds(), ids);
  EXPECT_EQ(state_->ActiveIds(), active);
  EXPECT_EQ(store_->ListIntents()->size(), 1u);

  report = Run(true);
  EXPECT_EQ(state_->ThinIds(), (std::vector<ThinId>{1, 2}));
  EXPECT_EQ(state_->ActiveIds(), std::vector<ThinId>{2});
  EXPECT_TRUE(store_->ListIntents()->empty());
  EXPECT_TRUE(Run(false).clean()) << Run(false).Summary();
}

TEST_F(ReconcilerTest, FinishesRecordedDeletes) {
  auto intent = store_->BeginRemove("child");
  ASSERT_TRUE(intent.ok());
  EXPECT_EQ(Run(false).unfinished_deletes, 1);
  Run(true);
  EXPECT_EQ(state_->ThinIds(), std::vector<ThinId>{1});
  EXPECT_TRUE(Run(false).clean());
}

TEST_F(ReconcilerTest, BusyDeviceIsReportedAndRetriedLater) {
  auto intent = store_->BeginRemove("child");
  ASSERT_TRUE(intent.ok());
  state_->SetOpen(2, true);
  ReconcileReport report = Run(true);
  EXPECT_EQ(report.problems.size(), 1u);
  EXPECT_EQ(store_->ListIntents()->size(), 1u);  // kept for the next run
  state_->SetOpen(2, false);
  Run(true);
  EXPECT_TRUE(store_->ListIntents()->empty());
  EXPECT_TRUE(Run(false).clean());
}

TEST_F(ReconcilerTest, MissingDevicesAreReportedAsLost) {
  ASSERT_TRUE(pool_->Deactivate(2).ok());
  ASSERT_TRUE(pool_->Delete(2).ok());
  ReconcileReport report = Run(true);
  EXPECT_EQ(report.lost, std::vector<std::string>{"child"});
}

}  // namespace
}  // namespace thinsnap
