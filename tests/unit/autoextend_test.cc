#include "pool/autoextend.h"

#include <gtest/gtest.h>

#include "fake/fake_pool.h"

namespace thinsnap {
namespace {

constexpr uint64_t kBlock = 64 << 10;

class AutoextendTest : public ::testing::Test {
 protected:
  std::shared_ptr<testing::FakePoolControl> state_ = testing::MakeFakePoolState();
  std::unique_ptr<ThinPool> pool_ = testing::MakeFakePool(state_);

  uint64_t DataTotalBytes() { return pool_->QueryStatus()->data_total_blocks * kBlock; }
};

TEST_F(AutoextendTest, GrowsByThePercentOnceTheThresholdIsReached) {
  PoolAutoextender ext(*pool_,
                       {.threshold_percent = 80, .grow_percent = 20, .max_data_bytes = 1ull << 40});
  state_->SetDataUsage(790, 1000);
  EXPECT_FALSE(*ext.CheckOnce());
  EXPECT_EQ(state_->Grows(), 0);
  state_->SetDataUsage(800, 1000);
  EXPECT_TRUE(*ext.CheckOnce());
  EXPECT_EQ(DataTotalBytes(), 1200 * kBlock);
  EXPECT_FALSE(*ext.CheckOnce());  // 800/1200 is below the threshold again
}

TEST_F(AutoextendTest, StopsAtTheMaximum) {
  PoolAutoextender ext(
      *pool_, {.threshold_percent = 50, .grow_percent = 100, .max_data_bytes = 1500 * kBlock});
  state_->SetDataUsage(900, 1000);
  EXPECT_TRUE(*ext.CheckOnce());
  EXPECT_EQ(DataTotalBytes(), 1500 * kBlock);  // capped, not 2000
  state_->SetDataUsage(1400, 1500);
  EXPECT_FALSE(*ext.CheckOnce());
  EXPECT_EQ(state_->Grows(), 1);
  EXPECT_EQ(DataTotalBytes(), 1500 * kBlock);
}

TEST_F(AutoextendTest, OffMeansNoThread) {
  PoolAutoextender ext(*pool_, {});
  ext.Start();  // threshold 0: nothing runs
  state_->SetDataUsage(1000, 1000);
  EXPECT_EQ(state_->Grows(), 0);
}

}  // namespace
}  // namespace thinsnap
