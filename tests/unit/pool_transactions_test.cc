#include "pool_transactions.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "fake/fake_pool.h"

namespace thinsnap {
namespace {

uint64_t Tid(ThinPool& pool) {
  auto st = pool.QueryStatus();
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  return st.ok() ? st->transaction_id : 0;
}

TEST(PoolTransactionsTest, CountsEachSuccessfulChange) {
  auto state = testing::MakeFakePoolState();
  auto pool = testing::MakeFakePool(state);
  PoolTransactions tx(*pool);
  ASSERT_TRUE(tx.CreateThin(1).ok());
  EXPECT_EQ(Tid(*pool), 1u);
  ASSERT_TRUE(tx.CreateSnap(2, 1).ok());
  EXPECT_EQ(Tid(*pool), 2u);
  // A refused change is not counted.
  EXPECT_EQ(tx.CreateThin(1).code(), Code::kAlreadyExists);
  state->FailNextMessage(EIO);
  EXPECT_FALSE(tx.CreateSnap(3, 1).ok());
  EXPECT_EQ(Tid(*pool), 2u);
  ASSERT_TRUE(tx.Delete(2).ok());
  EXPECT_EQ(Tid(*pool), 3u);
  // Deleting a missing id reaches the goal without changing anything.
  ASSERT_TRUE(tx.Delete(2).ok());
  EXPECT_EQ(Tid(*pool), 3u);
  EXPECT_EQ(state->ThinIds(), std::vector<ThinId>{1});
}

TEST(PoolTransactionsTest, RereadsTheIdWhenSomeoneElseMovedIt) {
  auto pool = testing::MakeFakePool();
  PoolTransactions tx(*pool);
  ASSERT_TRUE(tx.CreateThin(1).ok());
  // An administrator (or LVM) bumps the id behind thinsnap's back: the cached
  // value is stale, the CAS fails with EINVAL, and the next change still counts.
  ASSERT_TRUE(pool->SetTransactionId(1, 100).ok());
  ASSERT_TRUE(tx.CreateThin(2).ok());
  EXPECT_EQ(Tid(*pool), 101u);
  ASSERT_TRUE(tx.CreateThin(3).ok());
  EXPECT_EQ(Tid(*pool), 102u);
}

// Many threads change the pool at once: every change is counted exactly once,
// and no call returns before a set_transaction_id covers it. If n calls have
// returned, the largest of their sequence numbers is at least n, so the id
// must be at least n by then.
TEST(PoolTransactionsTest, ConcurrentChangesAreCountedBeforeTheyReturn) {
  auto state = testing::MakeFakePoolState();
  auto pool = testing::MakeFakePool(state);
  PoolTransactions tx(*pool);
  constexpr int kThreads = 16;
  constexpr int kPerThread = 25;
  std::atomic<uint64_t> returned{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const ThinId id = static_cast<ThinId>(1 + t * kPerThread + i);
        if (!tx.CreateThin(id).ok()) ++failures;
        const uint64_t n = ++returned;
        if (Tid(*pool) < n) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(Tid(*pool), static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(state->ThinIds().size(), static_cast<size_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace thinsnap
