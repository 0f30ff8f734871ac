#include "pool/thin_id_locks.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace thinsnap {
namespace {

// Holds on different ids are held at the same time: each thread waits, inside
// its Hold, until every other thread is inside its own.
TEST(ThinIdLocksTest, DifferentIdsAreHeldAtOnce) {
  ThinIdLocks locks;
  constexpr int kThreads = 8;
  std::atomic<int> inside{0};
  std::atomic<int> all_met{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ThinIdLocks::Hold hold(locks, static_cast<ThinId>(t));
      inside.fetch_add(1);
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (inside.load() < kThreads && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::yield();
      }
      if (inside.load() == kThreads) all_met.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(all_met.load(), kThreads) << "a Hold on one id waited for a Hold on another";
}

// Holds on one id never overlap.
TEST(ThinIdLocksTest, OneIdIsHeldByOneHoldAtATime) {
  ThinIdLocks locks;
  constexpr int kIds = 3;
  std::atomic<int> inside[kIds] = {0, 0, 0};
  std::atomic<int> overlaps{0};
  std::atomic<int> holds{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3000; ++i) {
        const ThinId id = static_cast<ThinId>((t + i) % kIds);
        ThinIdLocks::Hold hold(locks, id);
        if (inside[id].fetch_add(1) != 0) overlaps.fetch_add(1);
        std::this_thread::yield();
        inside[id].fetch_sub(1);
        holds.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(holds.load(), 6 * 3000);
  EXPECT_EQ(overlaps.load(), 0);
}

}  // namespace
}  // namespace thinsnap
