// Metadata-path benchmarks: the snapshotter over the in-memory fake pool, so
// only SQLite and the snapshot logic are measured. The database lives on
// /dev/shm (tmpfs), as in the test VM, so fsync does not dominate.
//
//   build/tests/bench/thinsnap_bench
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include "fake/fake_pool.h"
#include "snapshotter.h"

namespace thinsnap {
namespace {

class Fixture {
 public:
  Fixture() {
    dir_ = std::filesystem::path("/dev/shm") / ("thinsnap-bench-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto store = Store::Open((dir_ / "metadata.db").string());
    auto s = Snapshotter::Open(std::move(store).value(), testing::MakeFakePool(),
                               testing::MakeFakeFilesystem(), {});
    if (!s.ok()) throw std::runtime_error(s.status().ToString());
    snap = std::move(s).value();
  }
  ~Fixture() {
    snap.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Snapshotter> snap;

 private:
  std::filesystem::path dir_;
};

void BM_PrepareCommitRemove(benchmark::State& state) {
  Fixture f;
  int64_t i = 0;
  for (auto _ : state) {
    const std::string key = "default/1/k" + std::to_string(i++);
    if (!f.snap->Prepare(key, "", {{"containerd.io/snapshot.ref", key}}).ok() ||
        !f.snap->Commit(key + "-c", key, {}).ok() || !f.snap->Remove(key + "-c").ok()) {
      state.SkipWithError("cycle failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PrepareCommitRemove)->Unit(benchmark::kMillisecond);

void BM_WalkAll(benchmark::State& state) {
  Fixture f;
  const int n = static_cast<int>(state.range(0));
  for (int i = 0; i < n; ++i) {
    const std::string key = "default/" + std::to_string(i) + "/sha256:layer";
    if (!f.snap->Prepare(key, "", {{"containerd.io/gc.root", "x"}, {"n", std::to_string(i)}})
             .ok()) {
      state.SkipWithError("prepare failed");
      return;
    }
  }
  for (auto _ : state) {
    int64_t seen = 0;
    Status st = f.snap->Walk({}, [&](const Info&) {
      ++seen;
      return Status::Ok();
    });
    if (!st.ok() || seen != n) state.SkipWithError("walk failed");
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_WalkAll)->Arg(10000)->Unit(benchmark::kMillisecond);

void BM_WalkFiltered(benchmark::State& state) {
  Fixture f;
  const int n = static_cast<int>(state.range(0));
  for (int i = 0; i < n; ++i) {
    if (!f.snap->Prepare("k" + std::to_string(i), "", {{"n", std::to_string(i % 10)}}).ok()) {
      state.SkipWithError("prepare failed");
      return;
    }
  }
  for (auto _ : state) {
    int64_t seen = 0;
    Status st = f.snap->Walk({"labels.n==3,kind==active"}, [&](const Info&) {
      ++seen;
      return Status::Ok();
    });
    if (!st.ok() || seen != n / 10) state.SkipWithError("walk failed");
  }
}
BENCHMARK(BM_WalkFiltered)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace thinsnap

BENCHMARK_MAIN();
