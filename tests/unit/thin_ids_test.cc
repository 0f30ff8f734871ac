#include "snapshot/thin_ids.h"

#include <gtest/gtest.h>

#include <numeric>
#include <random>
#include <set>

namespace thinsnap {
namespace {

ThinId MustAllocate(ThinIdAllocator& ids) {
  auto id = ids.Allocate();
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  return id.ok() ? *id : kMaxThinId + 1;
}

TEST(ThinIdAllocatorTest, HandsOutIdsFromZeroUpwards) {
  ThinIdAllocator ids;
  for (ThinId want = 0; want < 5; ++want) EXPECT_EQ(MustAllocate(ids), want);
}

// A released id (and so its device name) comes back only after every other
// free id has been handed out.
TEST(ThinIdAllocatorTest, AReleasedIdIsNotReusedBeforeTheCursorWrapsAround) {
  ThinIdAllocator ids;
  for (int i = 0; i < 10; ++i) MustAllocate(ids);
  ids.Release(7);
  ids.Release(3);
  EXPECT_EQ(MustAllocate(ids), 10u);
  EXPECT_EQ(MustAllocate(ids), 11u);
  std::vector<ThinId> rest(kMaxThinId - 12);  // 12 .. kMaxThinId - 1
  std::iota(rest.begin(), rest.end(), ThinId{12});
  ids.Reserve(rest);
  EXPECT_EQ(MustAllocate(ids), kMaxThinId);
  EXPECT_EQ(MustAllocate(ids), 3u);  // wrapped around
  EXPECT_EQ(MustAllocate(ids), 7u);
  EXPECT_EQ(ids.Allocate().status().code(), Code::kResourceExhausted);
}

TEST(ThinIdAllocatorTest, ContinuesFromTheCursorItIsGiven) {
  ThinIdAllocator ids;
  ids.Reserve({0, 500, 501});
  ids.SetCursor(500);
  EXPECT_EQ(MustAllocate(ids), 502u);
  ids.SetCursor(kMaxThinId + 1);  // out of range: start over at 0
  EXPECT_EQ(MustAllocate(ids), 1u);
}

TEST(ThinIdAllocatorTest, SkipsReservedIdsInAnyOrder) {
  ThinIdAllocator ids;
  ids.Reserve({5, 0, 2, 2});
  for (ThinId want : {1u, 3u, 4u, 6u}) EXPECT_EQ(MustAllocate(ids), want);
}

TEST(ThinIdAllocatorTest, ReservingATakenIdChangesNothing) {
  ThinIdAllocator ids;
  EXPECT_EQ(MustAllocate(ids), 0u);
  ids.Reserve({0});
  ids.Release(0);
  ids.SetCursor(0);
  EXPECT_EQ(MustAllocate(ids), 0u);
}

TEST(ThinIdAllocatorTest, ReleasingAFreeIdChangesNothing) {
  ThinIdAllocator ids;
  ids.Release(4);  // never handed out
  EXPECT_EQ(MustAllocate(ids), 0u);
  ids.Release(0);
  ids.Release(0);
  ids.SetCursor(0);
  EXPECT_EQ(MustAllocate(ids), 0u);
  EXPECT_EQ(MustAllocate(ids), 1u);
}

TEST(ThinIdAllocatorTest, ASparseReserveLeavesTheIdsBelowFree) {
  ThinIdAllocator ids;
  ids.Reserve({kMaxThinId - 1, 1000});
  for (ThinId want = 0; want < 1000; ++want) ASSERT_EQ(MustAllocate(ids), want);
  EXPECT_EQ(MustAllocate(ids), 1001u);
}

TEST(ThinIdAllocatorTest, ExhaustedWhenEveryIdIsTaken) {
  ThinIdAllocator ids;
  std::vector<ThinId> all(kMaxThinId);  // every id but the highest
  std::iota(all.begin(), all.end(), ThinId{0});
  ids.Reserve(all);
  EXPECT_EQ(MustAllocate(ids), kMaxThinId);
  auto none = ids.Allocate();
  EXPECT_EQ(none.status().code(), Code::kResourceExhausted);
  ids.Release(12345);
  EXPECT_EQ(MustAllocate(ids), 12345u);
}

// Random reserves, allocations and releases against the simplest correct
// model: the first id at or after the cursor not in a set of used ids.
TEST(ThinIdAllocatorTest, MatchesANextFreeIdModel) {
  std::mt19937 rng(12);
  ThinIdAllocator ids;
  std::set<ThinId> used;
  std::uniform_int_distribution<ThinId> small(0, 300);
  ThinId cursor = 0;
  for (int step = 0; step < 20000; ++step) {
    const int op = static_cast<int>(rng() % 11);
    if (op < 5) {
      ThinId want = cursor;
      while (used.count(want)) ++want;  // the model never nears 2^24
      ASSERT_EQ(MustAllocate(ids), want) << "step " << step;
      used.insert(want);
      cursor = want + 1;
    } else if (op == 10) {
      cursor = small(rng);
      ids.SetCursor(cursor);
    } else if (op < 9) {
      const ThinId id = small(rng);
      ids.Release(id);
      used.erase(id);
    } else {
      const std::vector<ThinId> some = {small(rng), small(rng)};
      ids.Reserve(some);
      used.insert(some.begin(), some.end());
    }
  }
}

}  // namespace
}  // namespace thinsnap
