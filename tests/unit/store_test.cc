#include "metadata/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

namespace thinsnap {
namespace {

std::unique_ptr<Store> OpenMemory() {
  auto store = Store::Open(":memory:");
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return std::move(store).value();
}

NewSnapshot Snap(std::string key, std::string parent, ThinId id, Kind kind = Kind::kActive) {
  return NewSnapshot{std::move(key), std::move(parent), kind, id, 1 << 30, {{"l", "v"}}, 42};
}

PendingCreate MustCreate(Store& s, const NewSnapshot& n) {
  auto p = s.BeginCreate(n);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(s.FinishCreate(*p).ok());
  return *p;
}

TEST(StoreTest, MigratesFreshDatabaseToLatestSchema) {
  auto dir = std::filesystem::temp_directory_path() / ("store-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "meta.db").string();
  { ASSERT_TRUE(Store::Open(path).ok()); }
  // Reopening an up-to-date database is a no-op; a newer schema is refused.
  { ASSERT_TRUE(Store::Open(path).ok()); }
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  char* mode = nullptr;
  ASSERT_EQ(sqlite3_exec(raw, "PRAGMA user_version = 99", nullptr, nullptr, &mode), SQLITE_OK);
  sqlite3_close(raw);
  auto newer = Store::Open(path);
  EXPECT_EQ(newer.status().code(), Code::kFailedPrecondition);
  std::filesystem::remove_all(dir);
}

TEST(StoreTest, UnfinishedCreateIsInvisibleButReservesTheKey) {
  auto s = OpenMemory();
  auto p = s->BeginCreate(Snap("a", "", 1));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(s->Get("a").status().code(), Code::kNotFound);
  EXPECT_EQ(s->BeginCreate(Snap("a", "", 2)).status().code(), Code::kAlreadyExists);
  auto intents = s->ListIntents();
  ASSERT_EQ(intents->size(), 1u);
  EXPECT_EQ((*intents)[0].op, IntentOp::kCreate);
  EXPECT_EQ((*intents)[0].thin_id, 1u);
  ASSERT_TRUE(s->FinishCreate(*p).ok());
  EXPECT_TRUE(s->Get("a").ok());
  EXPECT_TRUE(s->ListIntents()->empty());
}

TEST(StoreTest, AbortCreateFreesKeyAndIntent) {
  auto s = OpenMemory();
  auto p = s->BeginCreate(Snap("a", "", 1));
  ASSERT_TRUE(s->AbortCreate(*p).ok());
  EXPECT_TRUE(s->ListIntents()->empty());
  EXPECT_TRUE(s->ThinIdsInUse()->empty());
  EXPECT_TRUE(s->BeginCreate(Snap("a", "", 1)).ok());
}

TEST(StoreTest, ParentMustExistAndBeCommitted) {
  auto s = OpenMemory();
  EXPECT_EQ(s->BeginCreate(Snap("c", "missing", 1)).status().code(), Code::kNotFound);
  MustCreate(*s, Snap("a", "", 1));
  EXPECT_EQ(s->BeginCreate(Snap("c", "a", 2)).status().code(), Code::kInvalidArgument);
  ASSERT_TRUE(s->Commit("a", "base", {}, {100, 100, 5}, 50).ok());
  auto p = s->BeginCreate(Snap("c", "base", 2));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->parent_thin_id, 1u);
  EXPECT_EQ(p->parent_mapped_bytes, 100u);
}

TEST(StoreTest, CommitRenamesReplacesLabelsAndChecksKinds) {
  auto s = OpenMemory();
  MustCreate(*s, Snap("a", "", 1));
  MustCreate(*s, Snap("v", "", 2, Kind::kView));
  MustCreate(*s, Snap("b", "", 3));
  EXPECT_EQ(s->Commit("nope", "x", {}, {}, 1).code(), Code::kNotFound);
  EXPECT_EQ(s->Commit("v", "x", {}, {}, 1).code(), Code::kFailedPrecondition);
  EXPECT_EQ(s->Commit("a", "b", {}, {}, 1).code(), Code::kAlreadyExists);
  ASSERT_TRUE(s->Commit("a", "x", {{"new", "1"}}, {10, 7, 3}, 99).ok());
  EXPECT_EQ(s->Get("a").status().code(), Code::kNotFound);
  auto x = s->Get("x");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->info.kind, Kind::kCommitted);
  EXPECT_EQ(x->info.labels, (Labels{{"new", "1"}}));
  EXPECT_EQ(x->usage_bytes, 7);
  EXPECT_EQ(x->usage_inodes, 3);
  EXPECT_EQ(x->thin_id, 1u);
  EXPECT_EQ(s->Commit("x", "y", {}, {}, 1).code(), Code::kFailedPrecondition);
}

TEST(StoreTest, RemoveRefusesParentsAndRecordsDeleteIntent) {
  auto s = OpenMemory();
  MustCreate(*s, Snap("a", "", 1));
  ASSERT_TRUE(s->Commit("a", "base", {}, {}, 1).ok());
  MustCreate(*s, Snap("child", "base", 2));
  EXPECT_EQ(s->BeginRemove("base").status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(s->BeginRemove("nope").status().code(), Code::kNotFound);
  auto intent = s->BeginRemove("child");
  ASSERT_TRUE(intent.ok());
  EXPECT_EQ(intent->op, IntentOp::kDelete);
  EXPECT_EQ(intent->thin_id, 2u);
  // The thin id stays accounted for until the intent is finished.
  auto ids = *s->ThinIdsInUse();
  EXPECT_NE(std::find(ids.begin(), ids.end(), 2u), ids.end());
  ASSERT_TRUE(s->FinishIntents({intent->id}).ok());
  ids = *s->ThinIdsInUse();
  EXPECT_EQ(std::find(ids.begin(), ids.end(), 2u), ids.end());
  EXPECT_TRUE(s->BeginRemove("base").ok());
}

TEST(StoreTest, ThinIdsAreUnique) {
  auto s = OpenMemory();
  MustCreate(*s, Snap("a", "", 7));
  EXPECT_FALSE(s->BeginCreate(Snap("b", "", 7)).ok());
}

TEST(StoreTest, KeysAreOpaqueBytes) {
  auto s = OpenMemory();
  const std::string odd[] = {
      "/", "..", "a b", "ns/12/sha256:abc", std::string(4096, 'k'), "\xff\xfe", "caf\xc3\xa9"};
  ThinId id = 1;
  for (const auto& key : odd) {
    MustCreate(*s, Snap(key, "", id++));
    auto r = s->Get(key);
    ASSERT_TRUE(r.ok()) << key;
    EXPECT_EQ(r->info.name, key);
  }
  int n = 0;
  ASSERT_TRUE(s->ForEach([&](const SnapshotRecord&) {
                 ++n;
                 return Status::Ok();
               }).ok());
  EXPECT_EQ(n, static_cast<int>(std::size(odd)));
}

TEST(StoreTest, ForEachPagesWithLabels) {
  auto s = OpenMemory();
  for (ThinId i = 1; i <= 1300; ++i) {
    NewSnapshot n = Snap("k" + std::to_string(i), "", i);
    n.labels = {{"i", std::to_string(i)}, {"even", i % 2 ? "no" : "yes"}};
    MustCreate(*s, n);
  }
  std::vector<std::string> seen;
  ASSERT_TRUE(s->ForEach([&](const SnapshotRecord& r) {
                 EXPECT_EQ(r.info.labels.at("i"), r.info.name.substr(1));
                 EXPECT_EQ(r.info.labels.size(), 2u);
                 seen.push_back(r.info.name);
                 return Status::Ok();
               }).ok());
  EXPECT_EQ(seen.size(), 1300u);
  // A callback error stops the walk and is returned.
  int calls = 0;
  Status st = s->ForEach([&](const SnapshotRecord&) {
    return ++calls == 3 ? Status::Internal("stop") : Status::Ok();
  });
  EXPECT_EQ(st.code(), Code::kInternal);
  EXPECT_EQ(calls, 3);
}

// Every field ForEach hands out, as one comparable line.
std::vector<std::string> Walked(Store& s) {
  std::vector<std::string> out;
  EXPECT_TRUE(s.ForEach([&](const SnapshotRecord& r) {
                 std::string line =
                     std::to_string(r.id) + "|" + r.info.name + "|" + r.info.parent + "|" +
                     KindName(r.info.kind) + "|" + std::to_string(r.info.created_ns) + "|" +
                     std::to_string(r.info.updated_ns) + "|" + std::to_string(r.thin_id) + "|" +
                     std::to_string(r.size_bytes) + "|" + std::to_string(r.mapped_bytes) + "|" +
                     std::to_string(r.usage_bytes) + "|" + std::to_string(r.usage_inodes);
                 for (const auto& [k, v] : r.info.labels) line += "|" + k + "=" + v;
                 out.push_back(std::move(line));
                 return Status::Ok();
               }).ok());
  return out;
}

// ForEach walks an in-memory copy of the visible snapshots, which each
// transaction changes after it commits. After every step of a random mix of
// creates (finished, aborted, left unfinished, refused), commits, removals and
// label changes, successful or refused, that copy walks exactly what a store
// opened afresh on the same file reads from the database.
TEST(StoreTest, TheWalkAlwaysEqualsTheDatabase) {
  auto dir = std::filesystem::temp_directory_path() / ("store-walk-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "meta.db").string();
  auto opened = Store::Open(path);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& s = **opened;
  std::mt19937 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto key = [&] { return "k" + std::to_string(pick(40)); };
  ThinId next_id = 1;
  std::vector<PendingCreate> unfinished;
  std::map<std::string, int> outcomes;
  for (int step = 0; step < 1500; ++step) {
    const int64_t now = 1000 + step;
    Status st;
    std::string op;
    switch (pick(6)) {
      case 0:
      case 1: {
        op = "create";
        NewSnapshot n = Snap(key(), pick(3) == 0 ? "" : key(), next_id++);
        n.kind = pick(4) == 0 ? Kind::kView : Kind::kActive;
        n.labels = {{"step", std::to_string(step)}};
        n.now_ns = now;
        auto p = s.BeginCreate(n);
        st = p.status();
        if (p.ok()) {
          const int end = pick(4);
          if (end <= 1) st = s.FinishCreate(*p);
          if (end == 2) st = s.AbortCreate(*p);
          if (end == 3) unfinished.push_back(*p);
        }
        break;
      }
      case 2:
        op = "commit";
        st = s.Commit(key(), key(), {{"committed", std::to_string(step)}},
                      CommitUsage{static_cast<uint64_t>(step), step, step}, now);
        break;
      case 3:
        op = "remove";
        st = s.BeginRemove(key()).status();
        break;
      case 4:
        op = "labels";
        st = s.SetLabels(key(), {{"set", std::to_string(step)}, {"x", "y"}}, now).status();
        break;
      default:
        op = "drop unfinished";
        if (!unfinished.empty()) {
          st = s.DropUnfinished(unfinished.back().snapshot_id);
          unfinished.pop_back();
        }
        break;
    }
    ++outcomes[op + " " + std::string(CodeName(st.code()))];
    auto fresh = Store::Open(path);
    ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
    ASSERT_EQ(Walked(s), Walked(**fresh))
        << "after step " << step << ": " << op << " -> " << st.ToString();
  }
  std::string tally;
  for (const auto& [what, n] : outcomes) tally += " " + what + ":" + std::to_string(n);
  std::printf("outcomes:%s; %zu visible at the end\n", tally.c_str(), Walked(s).size());
  // Each kind of change happened, and so did refusals.
  for (const char* expected : {"create OK", "create AlreadyExists", "commit OK", "commit NotFound",
                               "remove OK", "remove FailedPrecondition", "labels OK"}) {
    EXPECT_GT(outcomes[expected], 0) << expected;
  }
  opened->reset();
  std::filesystem::remove_all(dir);
}

// Walks run while snapshots come and go: each sees its snapshots once, in
// creation order, each record whole.
TEST(StoreTest, WalksDuringChangesSeeWholeRecordsInOrder) {
  auto s = OpenMemory();
  for (ThinId i = 1; i <= 600; ++i) MustCreate(*s, Snap("base" + std::to_string(i), "", i));
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (ThinId i = 1000; i < 1400; ++i) {
      const std::string k = "w" + std::to_string(i);
      MustCreate(*s, Snap(k, "", i));
      EXPECT_TRUE(s->SetLabels(k, {{"n", k}}, 7).ok());
      EXPECT_TRUE(s->BeginRemove(k).ok());
    }
    done = true;
  });
  int walks = 0;
  while (!done || walks == 0) {
    int64_t last = 0;
    int bases = 0;
    ASSERT_TRUE(s->ForEach([&](const SnapshotRecord& r) {
                   EXPECT_GT(r.id, last);
                   last = r.id;
                   if (r.info.name.starts_with("base")) {
                     ++bases;
                     EXPECT_EQ(r.info.labels.at("l"), "v");
                   } else if (r.info.labels.count("n")) {
                     EXPECT_EQ(r.info.labels.at("n"), r.info.name);
                     EXPECT_EQ(r.info.updated_ns, 7);
                   }
                   return Status::Ok();
                 }).ok());
    EXPECT_EQ(bases, 600);
    ++walks;
  }
  writer.join();
  EXPECT_EQ(Walked(*s).size(), 600u);
}

TEST(StoreTest, BaseDeviceIsRecordedWithItsIntent) {
  auto s = OpenMemory();
  EXPECT_FALSE(s->GetBase()->has_value());
  auto intent = s->BeginCreateDevice(0);
  ASSERT_TRUE(intent.ok());
  EXPECT_EQ(s->ListIntents()->size(), 1u);
  ASSERT_TRUE(s->FinishCreateBase(*intent, {0, 1 << 30, "ext4"}).ok());
  EXPECT_TRUE(s->ListIntents()->empty());
  auto base = s->GetBase();
  ASSERT_TRUE(base->has_value());
  EXPECT_EQ((*base)->fs_type, "ext4");
}

TEST(StoreTest, GrownOriginsAreRecordedRetiredAndGoWithTheirOrigin) {
  auto s = OpenMemory();
  MustCreate(*s, Snap("a", "", 1));
  ASSERT_TRUE(s->Commit("a", "layer", {}, {}, 1).ok());
  for (ThinId id : {5u, 6u}) {
    auto intent = s->BeginCreateDevice(id);
    ASSERT_TRUE(intent.ok());
    ASSERT_TRUE(s->FinishGrownOrigin(*intent, {id, 1, uint64_t{id} << 30}).ok());
  }
  EXPECT_TRUE(s->ListIntents()->empty());
  EXPECT_EQ(*s->ThinIdCursor(), 7u);
  ASSERT_EQ(s->ListGrownOrigins()->size(), 2u);
  auto ids = *s->ThinIdsInUse();
  EXPECT_NE(std::find(ids.begin(), ids.end(), 6u), ids.end());
  EXPECT_EQ(s->Counts()->thin_ids_in_use, 3);

  auto retired = s->RetireGrownOrigin(5);
  ASSERT_TRUE(retired.ok());
  EXPECT_EQ(retired->op, IntentOp::kDelete);
  EXPECT_EQ(s->RetireGrownOrigin(5).status().code(), Code::kNotFound);
  // Removing the origin retires the rest, in the same transaction.
  ASSERT_TRUE(s->BeginRemove("layer").ok());
  EXPECT_TRUE(s->ListGrownOrigins()->empty());
  std::vector<ThinId> deleting;
  const std::vector<Intent> intents = *s->ListIntents();
  for (const Intent& i : intents) {
    EXPECT_EQ(i.op, IntentOp::kDelete);
    deleting.push_back(i.thin_id);
  }
  std::sort(deleting.begin(), deleting.end());
  EXPECT_EQ(deleting, (std::vector<ThinId>{1, 5, 6}));
}

TEST(StoreTest, ValidatesSizes) {
  EXPECT_TRUE(ValidateKey("key", "a").ok());
  EXPECT_TRUE(ValidateKey("key", std::string(4096, 'a')).ok());
  EXPECT_EQ(ValidateKey("key", "").code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateKey("key", std::string(4097, 'a')).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateKey("key", std::string("a\0b", 3)).code(), Code::kInvalidArgument);
  EXPECT_TRUE(ValidateLabels({{"k", std::string(4095, 'v')}}).ok());
  EXPECT_EQ(ValidateLabels({{"k", std::string(4096, 'v')}}).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateLabels({{"", "v"}}).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace thinsnap
