// thinsnap_soak: concurrent load on a running thinsnapd, then a consistency check.
//
//   thinsnap_soak --socket PATH [--clients 32] [--duration 60] [--deadline 60] [--seed N]
//
// Each client has its own connection and its own keys, whose state it tracks
// exactly, so every result of a call on them is predictable: Prepare/View on
// a root, a shared base layer or one of its own committed layers; Commit;
// Remove of views, actives and leaf layers; Stat, Mounts, Usage, Update and
// a List filtered to its own label, which must return exactly the client's
// live set. On top, all clients race on a few shared "contended" keys, where
// OK, NotFound, AlreadyExists and FailedPrecondition are all legitimate.
//
// Every call has a deadline; DEADLINE_EXCEEDED (a hang) and any other code
// not expected for that call fail the run. At the end every client removes
// what it holds, then the shared keys go, and List must be empty.
// Prints operations and errors by code; exits 0 only if all is well.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"

namespace {

namespace v1 = containerd::services::snapshots::v1;
using grpc::StatusCode;
using Clock = std::chrono::steady_clock;

constexpr int kBases = 4;          // shared committed layers every client builds on
constexpr int kContendedKeys = 4;  // keys all clients race on
constexpr size_t kMaxLivePerClient = 8;
constexpr const char* kClientLabel = "soak.client";

const char* CodeName(StatusCode code) {
  switch (code) {
    case StatusCode::OK:
      return "OK";
    case StatusCode::CANCELLED:
      return "Cancelled";
    case StatusCode::UNKNOWN:
      return "Unknown";
    case StatusCode::INVALID_ARGUMENT:
      return "InvalidArgument";
    case StatusCode::DEADLINE_EXCEEDED:
      return "DeadlineExceeded";
    case StatusCode::NOT_FOUND:
      return "NotFound";
    case StatusCode::ALREADY_EXISTS:
      return "AlreadyExists";
    case StatusCode::PERMISSION_DENIED:
      return "PermissionDenied";
    case StatusCode::RESOURCE_EXHAUSTED:
      return "ResourceExhausted";
    case StatusCode::FAILED_PRECONDITION:
      return "FailedPrecondition";
    case StatusCode::ABORTED:
      return "Aborted";
    case StatusCode::OUT_OF_RANGE:
      return "OutOfRange";
    case StatusCode::UNIMPLEMENTED:
      return "Unimplemented";
    case StatusCode::INTERNAL:
      return "Internal";
    case StatusCode::UNAVAILABLE:
      return "Unavailable";
    case StatusCode::DATA_LOSS:
      return "DataLoss";
    case StatusCode::UNAUTHENTICATED:
      return "Unauthenticated";
    default:
      return "Other";
  }
}

// Counts of everything that happened, merged from all clients.
struct Tally {
  std::map<std::string, uint64_t> ops;           // by method, completed calls
  std::map<std::string, uint64_t> codes;         // non-OK results by code
  std::map<std::string, double> max_latency_ms;  // by method
  uint64_t unexpected_count = 0;                 // results the run must not see
  std::vector<std::string> unexpected;           // the first few of them, verbatim

  void Merge(const Tally& other) {
    for (const auto& [k, v] : other.ops) ops[k] += v;
    for (const auto& [k, v] : other.codes) codes[k] += v;
    for (const auto& [k, v] : other.max_latency_ms) {
      max_latency_ms[k] = std::max(max_latency_ms[k], v);
    }
    unexpected_count += other.unexpected_count;
    for (const std::string& u : other.unexpected) {
      if (unexpected.size() < 50) unexpected.push_back(u);
    }
  }
  uint64_t TotalOps() const {
    uint64_t n = 0;
    for (const auto& [k, v] : ops) n += v;
    return n;
  }
};

std::shared_ptr<grpc::Channel> Dial(const std::string& socket) {
  grpc::ChannelArguments args;
  // One connection per client: contention happens in the server, not in a
  // shared HTTP/2 connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("unix:" + socket, grpc::InsecureChannelCredentials(), args);
}

// One snapshot a client owns.
struct Owned {
  v1::Kind kind;
  std::string parent;
};

class Client {
 public:
  Client(int id, const std::string& socket, std::chrono::seconds deadline, uint64_t seed)
      : id_(id),
        stub_(v1::Snapshots::NewStub(Dial(socket))),
        deadline_(deadline),
        rng_(seed + static_cast<uint64_t>(id)) {}

  // Runs random operations until `until`, then removes everything it owns.
  void Run(Clock::time_point until) {
    while (Clock::now() < until) Step();
    RemoveAll();
  }

  const Tally& tally() const { return tally_; }

  // --- Calls; each records its outcome and checks it against `allowed`. ---

  StatusCode Prepare(const std::string& key, const std::string& parent,
                     std::initializer_list<StatusCode> allowed) {
    v1::PrepareSnapshotRequest request;
    request.set_key(key);
    request.set_parent(parent);
    Label(key, request.mutable_labels());
    v1::PrepareSnapshotResponse response;
    StatusCode code = Call("Prepare", key, allowed, [&](grpc::ClientContext* c) {
      return stub_->Prepare(c, request, &response);
    });
    if (code == StatusCode::OK) CheckMounts("Prepare", key, response.mounts(), "rw");
    return code;
  }
  StatusCode View(const std::string& key, const std::string& parent,
                  std::initializer_list<StatusCode> allowed) {
    v1::ViewSnapshotRequest request;
    request.set_key(key);
    request.set_parent(parent);
    Label(key, request.mutable_labels());
    v1::ViewSnapshotResponse response;
    StatusCode code = Call("View", key, allowed, [&](grpc::ClientContext* c) {
      return stub_->View(c, request, &response);
    });
    if (code == StatusCode::OK) CheckMounts("View", key, response.mounts(), "ro");
    return code;
  }
  StatusCode Commit(const std::string& name, const std::string& key,
                    std::initializer_list<StatusCode> allowed) {
    v1::CommitSnapshotRequest request;
    request.set_name(name);
    request.set_key(key);
    Label(name, request.mutable_labels());
    google::protobuf::Empty response;
    return Call("Commit", key, allowed,
                [&](grpc::ClientContext* c) { return stub_->Commit(c, request, &response); });
  }
  StatusCode Remove(const std::string& key, std::initializer_list<StatusCode> allowed) {
    v1::RemoveSnapshotRequest request;
    request.set_key(key);
    google::protobuf::Empty response;
    return Call("Remove", key, allowed,
                [&](grpc::ClientContext* c) { return stub_->Remove(c, request, &response); });
  }
  // All names in the listing matching `filter` (empty: all).
  StatusCode List(const std::string& filter, std::set<std::string>* names) {
    v1::ListSnapshotsRequest request;
    if (!filter.empty()) request.add_filters(filter);
    return Call("List", filter, {StatusCode::OK}, [&](grpc::ClientContext* c) {
      auto reader = stub_->List(c, request);
      v1::ListSnapshotsResponse response;
      while (reader->Read(&response)) {
        for (const v1::Info& info : response.info()) names->insert(info.name());
      }
      return reader->Finish();
    });
  }
  StatusCode Cleanup() {
    v1::CleanupRequest request;
    google::protobuf::Empty response;
    return Call("Cleanup", "", {StatusCode::OK},
                [&](grpc::ClientContext* c) { return stub_->Cleanup(c, request, &response); });
  }

 private:
  // Snapshots a client owns carry its id, so that a filtered List returns
  // exactly them; shared ones (bases, contended keys) carry no client id.
  void Label(const std::string& key, google::protobuf::Map<std::string, std::string>* labels) {
    if (key.rfind(OwnPrefix(), 0) == 0) {
      (*labels)[kClientLabel] = std::to_string(id_);
    } else {
      (*labels)["soak.shared"] = "true";
    }
  }
  std::string OwnPrefix() const { return "soak/" + std::to_string(id_) + "/"; }

  template <typename Fn>
  StatusCode Call(const char* method, const std::string& key,
                  std::initializer_list<StatusCode> allowed, Fn&& fn) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline_);
    const auto start = Clock::now();
    grpc::Status status = fn(&context);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    tally_.ops[method]++;
    tally_.max_latency_ms[method] = std::max(tally_.max_latency_ms[method], ms);
    const StatusCode code = status.error_code();
    if (code != StatusCode::OK) tally_.codes[CodeName(code)]++;
    if (std::find(allowed.begin(), allowed.end(), code) == allowed.end()) {
      Unexpected(std::string(method) + "(" + key + ") -> " + CodeName(code) + ": " +
                 status.error_message());
    }
    return code;
  }

  void Unexpected(const std::string& what) {
    tally_.unexpected_count++;
    if (tally_.unexpected.size() < 20) {
      tally_.unexpected.push_back("client " + std::to_string(id_) + ": " + what);
    }
  }

  void CheckMounts(const char* method, const std::string& key,
                   const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts,
                   const std::string& option) {
    if (mounts.size() != 1 || mounts[0].source().rfind("/dev/mapper/", 0) != 0 ||
        mounts[0].options_size() != 1 || mounts[0].options(0) != option) {
      Unexpected(std::string(method) + "(" + key + ") returned unexpected mounts");
    }
  }

  std::string NewKey() { return OwnPrefix() + std::to_string(next_++); }

  std::string Pick(const std::vector<std::string>& from) {
    return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng_)];
  }
  std::vector<std::string> Keys(v1::Kind kind) const {
    std::vector<std::string> keys;
    for (const auto& [k, o] : owned_) {
      if (o.kind == kind) keys.push_back(k);
    }
    return keys;
  }
  bool HasChildren(const std::string& key) const {
    return std::any_of(owned_.begin(), owned_.end(),
                       [&](const auto& entry) { return entry.second.parent == key; });
  }
  std::vector<std::string> Removable() const {
    std::vector<std::string> keys;
    for (const auto& [k, o] : owned_) {
      if (!HasChildren(k)) keys.push_back(k);
    }
    return keys;
  }

  void Step() {
    const int dice = std::uniform_int_distribution<int>(0, 99)(rng_);
    if (owned_.size() >= kMaxLivePerClient || (dice < 20 && !owned_.empty())) {
      RemoveOne();
    } else if (dice < 40) {
      CreateOne(v1::ACTIVE);
    } else if (dice < 50) {
      CreateOne(v1::VIEW);
    } else if (dice < 60) {
      CommitOne();
    } else if (dice < 80) {
      ReadOne();
    } else if (dice < 88) {
      CheckListing();
    } else {
      Contend();
    }
  }

  std::string PickParent(bool need_parent) {
    std::vector<std::string> committed = Keys(v1::COMMITTED);
    const int dice = std::uniform_int_distribution<int>(0, 2)(rng_);
    if (dice == 0 && !committed.empty()) return Pick(committed);
    if (dice == 1 || need_parent) {
      return "soak/base/" + std::to_string(std::uniform_int_distribution<int>(0, kBases - 1)(rng_));
    }
    return "";
  }

  void CreateOne(v1::Kind kind) {
    const std::string key = NewKey();
    const std::string parent = PickParent(kind == v1::VIEW);
    const StatusCode code = kind == v1::VIEW ? View(key, parent, {StatusCode::OK})
                                             : Prepare(key, parent, {StatusCode::OK});
    if (code == StatusCode::OK) owned_[key] = Owned{kind, parent};
  }

  void CommitOne() {
    std::vector<std::string> active = Keys(v1::ACTIVE);
    if (active.empty()) return CreateOne(v1::ACTIVE);
    const std::string key = Pick(active);
    const std::string name = NewKey();
    if (Commit(name, key, {StatusCode::OK}) == StatusCode::OK) {
      owned_[name] = Owned{v1::COMMITTED, owned_[key].parent};
      owned_.erase(key);
    }
  }

  void RemoveOne() {
    std::vector<std::string> keys = Removable();
    if (keys.empty()) return;
    const std::string key = Pick(keys);
    if (Remove(key, {StatusCode::OK}) == StatusCode::OK) owned_.erase(key);
  }

  void ReadOne() {
    if (owned_.empty()) return CreateOne(v1::ACTIVE);
    std::vector<std::string> all;
    for (const auto& [k, o] : owned_) all.push_back(k);
    const std::string key = Pick(all);
    const Owned& o = owned_[key];
    switch (std::uniform_int_distribution<int>(0, 3)(rng_)) {
      case 0: {
        v1::StatSnapshotRequest request;
        request.set_key(key);
        v1::StatSnapshotResponse response;
        if (Call("Stat", key, {StatusCode::OK}, [&](grpc::ClientContext* c) {
              return stub_->Stat(c, request, &response);
            }) == StatusCode::OK) {
          if (response.info().name() != key || response.info().kind() != o.kind ||
              response.info().parent() != o.parent) {
            Unexpected("Stat(" + key + ") disagrees: " + response.info().ShortDebugString());
          }
        }
        break;
      }
      case 1: {
        v1::MountsRequest request;
        request.set_key(key);
        v1::MountsResponse response;
        // A committed layer has no mounts.
        const StatusCode want =
            o.kind == v1::COMMITTED ? StatusCode::FAILED_PRECONDITION : StatusCode::OK;
        if (Call("Mounts", key, {want}, [&](grpc::ClientContext* c) {
              return stub_->Mounts(c, request, &response);
            }) == StatusCode::OK) {
          CheckMounts("Mounts", key, response.mounts(), o.kind == v1::VIEW ? "ro" : "rw");
        }
        break;
      }
      case 2: {
        v1::UsageRequest request;
        request.set_key(key);
        v1::UsageResponse response;
        Call("Usage", key, {StatusCode::OK},
             [&](grpc::ClientContext* c) { return stub_->Usage(c, request, &response); });
        break;
      }
      default: {
        v1::UpdateSnapshotRequest request;
        request.mutable_info()->set_name(key);
        (*request.mutable_info()->mutable_labels())["soak.touched"] = std::to_string(next_);
        request.mutable_update_mask()->add_paths("labels.soak.touched");
        v1::UpdateSnapshotResponse response;
        if (Call("Update", key, {StatusCode::OK}, [&](grpc::ClientContext* c) {
              return stub_->Update(c, request, &response);
            }) == StatusCode::OK) {
          const auto& labels = response.info().labels();
          auto mine = labels.find(kClientLabel);
          if (mine == labels.end() || mine->second != std::to_string(id_)) {
            Unexpected("Update(" + key + ") lost the client label");
          }
        }
        break;
      }
    }
  }

  // The server's view of this client's snapshots must equal ours.
  void CheckListing() {
    std::set<std::string> listed;
    const std::string filter =
        "labels.\"" + std::string(kClientLabel) + "\"==" + std::to_string(id_);
    if (List(filter, &listed) != StatusCode::OK) return;
    std::set<std::string> mine;
    for (const auto& [k, o] : owned_) mine.insert(k);
    if (listed != mine) {
      std::string diff;
      for (const std::string& k : listed) {
        if (!mine.count(k)) diff += " +" + k;
      }
      for (const std::string& k : mine) {
        if (!listed.count(k)) diff += " -" + k;
      }
      Unexpected("List(" + filter + ") differs from what the client owns:" + diff);
    }
  }

  // Races with every other client on a few shared keys. Any outcome a
  // concurrent world allows is fine; the server must never fail otherwise.
  void Contend() {
    const std::string n =
        std::to_string(std::uniform_int_distribution<int>(0, kContendedKeys - 1)(rng_));
    const std::string key = "soak/contended/" + n;
    const std::string name = "soak/contended-layer/" + n;
    const std::initializer_list<StatusCode> racy = {StatusCode::OK, StatusCode::NOT_FOUND,
                                                    StatusCode::ALREADY_EXISTS,
                                                    StatusCode::FAILED_PRECONDITION};
    switch (std::uniform_int_distribution<int>(0, 4)(rng_)) {
      case 0:
        Prepare(key, "", {StatusCode::OK, StatusCode::ALREADY_EXISTS});
        break;
      case 1:
        View(key, "soak/base/0", {StatusCode::OK, StatusCode::ALREADY_EXISTS});
        break;
      case 2:
        Commit(name, key, racy);
        break;
      case 3:
        Remove(key, {StatusCode::OK, StatusCode::NOT_FOUND});
        break;
      default:
        Remove(name, {StatusCode::OK, StatusCode::NOT_FOUND});
        break;
    }
  }

  // Leaves first, until nothing is left.
  void RemoveAll() {
    while (!owned_.empty()) {
      std::vector<std::string> keys = Removable();
      if (keys.empty()) {
        Unexpected("ownership graph has a cycle");
        return;
      }
      for (const std::string& key : keys) {
        if (Remove(key, {StatusCode::OK}) != StatusCode::OK) return;
        owned_.erase(key);
      }
    }
  }

  const int id_;
  std::unique_ptr<v1::Snapshots::Stub> stub_;
  const std::chrono::seconds deadline_;
  std::mt19937_64 rng_;
  std::map<std::string, Owned> owned_;
  uint64_t next_ = 0;
  Tally tally_;
};

int Main(int argc, char** argv) {
  CLI::App app{"thinsnap_soak: concurrent load and consistency check against thinsnapd"};
  std::string socket;
  int clients = 32;
  int duration_s = 60;
  int deadline_s = 60;
  uint64_t seed = 1;
  app.add_option("--socket", socket, "thinsnapd's unix socket")->required();
  app.add_option("--clients", clients, "concurrent clients")->check(CLI::Range(1, 1024));
  app.add_option("--duration", duration_s, "seconds of load")->check(CLI::Range(1, 86400));
  app.add_option("--deadline", deadline_s, "seconds any one call may take")
      ->check(CLI::Range(1, 3600));
  app.add_option("--seed", seed, "random seed");
  CLI11_PARSE(app, argc, argv);

  const std::chrono::seconds deadline(deadline_s);
  Client admin(-1, socket, deadline, seed);
  Tally total;
  bool ok = true;

  // Shared base layers.
  for (int i = 0; i < kBases; ++i) {
    const std::string base = "soak/base/" + std::to_string(i);
    ok &= admin.Prepare(base + "/work", "", {StatusCode::OK}) == StatusCode::OK;
    ok &= admin.Commit(base, base + "/work", {StatusCode::OK}) == StatusCode::OK;
  }
  if (!ok) {
    total.Merge(admin.tally());
    for (const std::string& u : total.unexpected)
      std::fprintf(stderr, "UNEXPECTED %s\n", u.c_str());
    std::fprintf(stderr, "soak: could not create the base layers\n");
    return 1;
  }

  std::printf("soak: %d clients for %d s (call deadline %d s, seed %llu)\n", clients, duration_s,
              deadline_s, static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  const auto start = Clock::now();
  const auto until = start + std::chrono::seconds(duration_s);
  std::vector<std::unique_ptr<Client>> workers;
  for (int i = 0; i < clients; ++i) {
    workers.push_back(std::make_unique<Client>(i, socket, deadline, seed));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w, until] { w->Run(until); });
  for (std::thread& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  // Shared keys: whatever the races left.
  for (int i = 0; i < kContendedKeys; ++i) {
    const std::string n = std::to_string(i);
    admin.Remove("soak/contended/" + n, {StatusCode::OK, StatusCode::NOT_FOUND});
    admin.Remove("soak/contended-layer/" + n, {StatusCode::OK, StatusCode::NOT_FOUND});
  }
  for (int i = kBases - 1; i >= 0; --i) {
    admin.Remove("soak/base/" + std::to_string(i), {StatusCode::OK});
  }
  // The final Cleanup waits for the background reclaim of everything removed
  // during the run, a backlog that grows with the run's throughput (about 40
  // removals/s here); it gets a deadline of its own, not the per-call one.
  Client drain(-2, socket, std::chrono::seconds(600), seed);
  drain.Cleanup();
  std::set<std::string> left;
  admin.List("", &left);

  for (const auto& w : workers) total.Merge(w->tally());
  total.Merge(admin.tally());
  total.Merge(drain.tally());
  total.Merge(drain.tally());

  std::printf("soak: %llu operations in %.1f s (%.1f/s)\n",
              static_cast<unsigned long long>(total.TotalOps()), elapsed,
              static_cast<double>(total.TotalOps()) / elapsed);
  for (const auto& [method, n] : total.ops) {
    std::printf("  %-8s %8llu  max %.0f ms\n", method.c_str(), static_cast<unsigned long long>(n),
                total.max_latency_ms[method]);
  }
  std::printf("soak: errors by code:%s\n", total.codes.empty() ? " none" : "");
  for (const auto& [code, n] : total.codes) {
    std::printf("  %-20s %llu\n", code.c_str(), static_cast<unsigned long long>(n));
  }
  std::printf("soak: unexpected results: %llu\n",
              static_cast<unsigned long long>(total.unexpected_count));
  for (const std::string& u : total.unexpected) std::printf("UNEXPECTED %s\n", u.c_str());
  if (!left.empty()) {
    std::printf("soak: %zu snapshot(s) left after removing everything, e.g. %s\n", left.size(),
                left.begin()->c_str());
  }
  const bool passed = total.unexpected_count == 0 && left.empty() && total.TotalOps() > 0;
  std::printf("soak: %s\n", passed ? "PASS" : "FAIL");
  return passed ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
