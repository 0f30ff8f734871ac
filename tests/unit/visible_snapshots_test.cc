#include "metadata/visible_snapshots.h"

#include <gtest/gtest.h>

namespace thinsnap {
namespace {

SnapshotRecord Record(int64_t id, std::string name) {
  SnapshotRecord r;
  r.id = id;
  r.info.name = std::move(name);
  return r;
}

std::vector<std::string> Names(const std::vector<VisibleSnapshots::Record>& page) {
  std::vector<std::string> names;
  for (const auto& r : page) names.push_back(r->info.name);
  return names;
}

TEST(VisibleSnapshotsTest, PagesAreInIdOrderAfterTheGivenId) {
  VisibleSnapshots v;
  for (int64_t id : {5, 1, 3, 9, 7}) v.Put(Record(id, "s" + std::to_string(id)));
  EXPECT_EQ(Names(v.Page(0, 3)), (std::vector<std::string>{"s1", "s3", "s5"}));
  EXPECT_EQ(Names(v.Page(5, 3)), (std::vector<std::string>{"s7", "s9"}));
  EXPECT_EQ(Names(v.Page(4, 1)), (std::vector<std::string>{"s5"}));
  EXPECT_TRUE(v.Page(9, 3).empty());
}

TEST(VisibleSnapshotsTest, PutReplacesAndEraseForgets) {
  VisibleSnapshots v;
  v.Put(Record(1, "active"));
  v.Put(Record(2, "other"));
  v.Put(Record(1, "committed"));
  v.Erase(2);
  v.Erase(42);  // absent: nothing happens
  EXPECT_EQ(Names(v.Page(0, 10)), (std::vector<std::string>{"committed"}));
}

// A page handed out stays whole and unchanged whatever happens after.
TEST(VisibleSnapshotsTest, APageOutlivesChangesToItsRecords) {
  VisibleSnapshots v;
  v.Put(Record(1, "a"));
  v.Put(Record(2, "b"));
  auto page = v.Page(0, 10);
  v.Put(Record(1, "a2"));
  v.Erase(2);
  EXPECT_EQ(Names(page), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Names(v.Page(0, 10)), (std::vector<std::string>{"a2"}));
}

}  // namespace
}  // namespace thinsnap
