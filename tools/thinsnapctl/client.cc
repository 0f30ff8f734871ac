#include "client.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "json.h"

namespace thinsnap::ctl {

namespace {

namespace pb = containerd::services::snapshots::v1;
using google::protobuf::util::TimeUtil;

// Spelt as thinsnap's own Status codes (base/status.h), so that every error
// line reads `thinsnapctl: <Code>: <message>` with one spelling.
const char* GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "Cancelled";
    case grpc::StatusCode::UNKNOWN:
      return "Unknown";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "InvalidArgument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DeadlineExceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "NotFound";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "AlreadyExists";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PermissionDenied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "ResourceExhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FailedPrecondition";
    case grpc::StatusCode::ABORTED:
      return "Aborted";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OutOfRange";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "Unimplemented";
    case grpc::StatusCode::INTERNAL:
      return "Internal";
    case grpc::StatusCode::UNAVAILABLE:
      return "Unavailable";
    case grpc::StatusCode::DATA_LOSS:
      return "DataLoss";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "Unauthenticated";
    default:
      return "Unknown";
  }
}

int Fail(const grpc::Status& status) {
  std::string message = status.error_message();
  // gRPC reports a refused connection as "failed to connect to all addresses;
  // last error: UNKNOWN: unix:<path>: <errno text>", a second code spelt
  // another way. Say what failed and what to check instead.
  const size_t address = message.find("unix:");
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      message.rfind("failed to connect to all addresses", 0) == 0 && address != std::string::npos) {
    message = "cannot reach thinsnapd at " + message.substr(address) +
              " (is it running? --socket or $THINSNAP_SOCKET names its socket)";
  }
  std::cerr << "thinsnapctl: " << GrpcCodeName(status.error_code()) << ": " << message << "\n";
  return 1;
}

const char* KindName(pb::Kind kind) {
  switch (kind) {
    case pb::VIEW:
      return "view";
    case pb::ACTIVE:
      return "active";
    case pb::COMMITTED:
      return "committed";
    default:
      return "unknown";
  }
}

// One connection per invocation; each call gets its own context carrying the
// deadline and the optional namespace header.
class Connection {
 public:
  explicit Connection(const ClientOptions& opts)
      : opts_(opts),
        stub_(pb::Snapshots::NewStub(
            grpc::CreateChannel("unix:" + opts.socket, grpc::InsecureChannelCredentials()))) {}

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + opts_.timeout);
    if (!opts_.ns.empty()) ctx->AddMetadata("containerd-namespace", opts_.ns);
    return ctx;
  }
  pb::Snapshots::Stub& stub() { return *stub_; }
  const std::string& snapshotter() const { return opts_.snapshotter; }

  // Every snapshot, in the order the server streams them.
  grpc::Status ListAll(std::vector<pb::Info>* out) {
    pb::ListSnapshotsRequest req;
    req.set_snapshotter(snapshotter());
    auto ctx = Context();
    auto reader = stub_->List(ctx.get(), req);
    pb::ListSnapshotsResponse resp;
    while (reader->Read(&resp)) {
      for (const pb::Info& info : resp.info()) out->push_back(info);
    }
    return reader->Finish();
  }

 private:
  const ClientOptions& opts_;
  std::unique_ptr<pb::Snapshots::Stub> stub_;
};

toml::table InfoJson(const pb::Info& info) {
  toml::table labels;
  for (const auto& [k, v] : info.labels()) labels.insert(k, v);
  return toml::table{
      {"name", info.name()},
      {"parent", info.parent()},
      {"kind", KindName(info.kind())},
      {"created_at", TimeUtil::ToString(info.created_at())},
      {"updated_at", TimeUtil::ToString(info.updated_at())},
      {"labels", std::move(labels)},
  };
}

// Text form: "<type> <source> <options>", one mount a line, options joined
// with commas ("defaults" when there are none) so a shell can feed the fields
// straight to mount(8).
int PrintMounts(const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts,
                bool json) {
  if (json) {
    toml::array arr;
    for (const auto& m : mounts) {
      toml::array options;
      for (const auto& o : m.options()) options.push_back(o);
      arr.push_back(toml::table{{"type", m.type()},
                                {"source", m.source()},
                                {"target", m.target()},
                                {"options", std::move(options)}});
    }
    PrintJson(arr);
    return 0;
  }
  for (const auto& m : mounts) {
    std::string options;
    for (const auto& o : m.options()) options += (options.empty() ? "" : ",") + o;
    std::cout << m.type() << " " << m.source() << " " << (options.empty() ? "defaults" : options)
              << "\n";
  }
  return 0;
}

template <typename Request>
void SetLabels(Request* req, const Labels& labels) {
  for (const auto& [k, v] : labels) (*req->mutable_labels())[k] = v;
}

}  // namespace

int List(const ClientOptions& opts) {
  Connection conn(opts);
  std::vector<pb::Info> infos;
  if (grpc::Status st = conn.ListAll(&infos); !st.ok()) return Fail(st);
  std::sort(infos.begin(), infos.end(),
            [](const pb::Info& a, const pb::Info& b) { return a.name() < b.name(); });
  if (opts.json) {
    toml::array arr;
    for (const auto& info : infos) arr.push_back(InfoJson(info));
    PrintJson(arr);
    return 0;
  }
  size_t width = 3;
  for (const auto& info : infos) width = std::max(width, info.name().size());
  size_t parent_width = 6;
  for (const auto& info : infos) parent_width = std::max(parent_width, info.parent().size());
  auto row = [&](const std::string& key, const std::string& parent, const std::string& kind) {
    std::cout << key << std::string(width - key.size() + 2, ' ') << parent
              << std::string(parent_width - parent.size() + 2, ' ') << kind << "\n";
  };
  row("KEY", "PARENT", "KIND");
  for (const auto& info : infos) row(info.name(), info.parent(), KindName(info.kind()));
  return 0;
}

int Tree(const ClientOptions& opts) {
  Connection conn(opts);
  std::vector<pb::Info> infos;
  if (grpc::Status st = conn.ListAll(&infos); !st.ok()) return Fail(st);
  std::map<std::string, const pb::Info*> by_name;
  for (const auto& info : infos) by_name[info.name()] = &info;
  std::map<std::string, std::vector<const pb::Info*>> children;  // sorted by parent
  std::vector<const pb::Info*> roots;
  for (const auto& info : infos) {
    // A snapshot whose parent is missing from the listing is shown as a root
    // rather than dropped.
    if (info.parent().empty() || by_name.count(info.parent()) == 0) {
      roots.push_back(&info);
    } else {
      children[info.parent()].push_back(&info);
    }
  }
  auto by_key = [](const pb::Info* a, const pb::Info* b) { return a->name() < b->name(); };
  std::sort(roots.begin(), roots.end(), by_key);
  for (auto& [parent, list] : children) std::sort(list.begin(), list.end(), by_key);

  std::function<void(const pb::Info*, const std::string&, bool, bool)> print =
      [&](const pb::Info* node, const std::string& prefix, bool last, bool root) {
        std::cout << prefix << (root ? "" : (last ? "`-- " : "|-- ")) << node->name() << " ["
                  << KindName(node->kind()) << "]";
        if (root && !node->parent().empty()) std::cout << " (parent " << node->parent() << ")";
        std::cout << "\n";
        const auto it = children.find(node->name());
        if (it == children.end()) return;
        const std::string next = root ? prefix : prefix + (last ? "    " : "|   ");
        for (size_t i = 0; i < it->second.size(); ++i) {
          print(it->second[i], next, i + 1 == it->second.size(), false);
        }
      };
  for (const pb::Info* root : roots) print(root, "", true, true);
  return 0;
}

int Info(const ClientOptions& opts, const std::string& key) {
  Connection conn(opts);
  pb::StatSnapshotRequest req;
  req.set_snapshotter(conn.snapshotter());
  req.set_key(key);
  pb::StatSnapshotResponse resp;
  auto ctx = conn.Context();
  if (grpc::Status st = conn.stub().Stat(ctx.get(), req, &resp); !st.ok()) return Fail(st);
  const pb::Info& info = resp.info();
  if (opts.json) {
    PrintJson(InfoJson(info));
    return 0;
  }
  std::cout << "name:       " << info.name() << "\n"
            << "parent:     " << info.parent() << "\n"
            << "kind:       " << KindName(info.kind()) << "\n"
            << "created_at: " << TimeUtil::ToString(info.created_at()) << "\n"
            << "updated_at: " << TimeUtil::ToString(info.updated_at()) << "\n";
  std::map<std::string, std::string> labels(info.labels().begin(), info.labels().end());
  for (const auto& [k, v] : labels) std::cout << "label:      " << k << "=" << v << "\n";
  return 0;
}

int Usage(const ClientOptions& opts, const std::optional<std::string>& key) {
  Connection conn(opts);
  std::vector<std::string> keys;
  if (key) {
    keys.push_back(*key);
  } else {
    std::vector<pb::Info> infos;
    if (grpc::Status st = conn.ListAll(&infos); !st.ok()) return Fail(st);
    for (const auto& info : infos) keys.push_back(info.name());
    std::sort(keys.begin(), keys.end());
  }
  struct Row {
    std::string key;
    int64_t size;
    int64_t inodes;
  };
  std::vector<Row> rows;
  int64_t total_size = 0;
  int64_t total_inodes = 0;
  for (const std::string& k : keys) {
    pb::UsageRequest req;
    req.set_snapshotter(conn.snapshotter());
    req.set_key(k);
    pb::UsageResponse resp;
    auto ctx = conn.Context();
    grpc::Status st = conn.stub().Usage(ctx.get(), req, &resp);
    // A snapshot removed between List and Usage is no longer part of the sum.
    if (!key && st.error_code() == grpc::StatusCode::NOT_FOUND) continue;
    if (!st.ok()) return Fail(st);
    rows.push_back({k, resp.size(), resp.inodes()});
    total_size += resp.size();
    total_inodes += resp.inodes();
  }
  if (opts.json) {
    if (key) {
      PrintJson(
          toml::table{{"name", rows[0].key}, {"size", rows[0].size}, {"inodes", rows[0].inodes}});
      return 0;
    }
    toml::array arr;
    for (const Row& r : rows) {
      arr.push_back(toml::table{{"name", r.key}, {"size", r.size}, {"inodes", r.inodes}});
    }
    PrintJson(toml::table{
        {"snapshots", std::move(arr)}, {"total_size", total_size}, {"total_inodes", total_inodes}});
    return 0;
  }
  size_t width = 5;
  for (const Row& r : rows) width = std::max(width, r.key.size());
  auto row = [&](const std::string& k, const std::string& size, const std::string& inodes) {
    std::cout << k << std::string(width - k.size() + 2, ' ') << size
              << std::string(size.size() < 14 ? 14 - size.size() : 1, ' ') << inodes << "\n";
  };
  row("KEY", "BYTES", "INODES");  // usage in bytes, as containerd reports it
  for (const Row& r : rows) row(r.key, std::to_string(r.size), std::to_string(r.inodes));
  if (!key) row("TOTAL", std::to_string(total_size), std::to_string(total_inodes));
  return 0;
}

int Prepare(const ClientOptions& opts, const std::string& key, const std::string& parent,
            const Labels& labels) {
  Connection conn(opts);
  pb::PrepareSnapshotRequest req;
  req.set_snapshotter(conn.snapshotter());
  req.set_key(key);
  req.set_parent(parent);
  SetLabels(&req, labels);
  pb::PrepareSnapshotResponse resp;
  auto ctx = conn.Context();
  if (grpc::Status st = conn.stub().Prepare(ctx.get(), req, &resp); !st.ok()) return Fail(st);
  return PrintMounts(resp.mounts(), opts.json);
}

int View(const ClientOptions& opts, const std::string& key, const std::string& parent,
         const Labels& labels) {
  Connection conn(opts);
  pb::ViewSnapshotRequest req;
  req.set_snapshotter(conn.snapshotter());
  req.set_key(key);
  req.set_parent(parent);
  SetLabels(&req, labels);
  pb::ViewSnapshotResponse resp;
  auto ctx = conn.Context();
  if (grpc::Status st = conn.stub().View(ctx.get(), req, &resp); !st.ok()) return Fail(st);
  return PrintMounts(resp.mounts(), opts.json);
}

int Mounts(const ClientOptions& opts, const std::string& key) {
  Connection conn(opts);
  pb::MountsRequest req;
  req.set_snapshotter(conn.snapshotter());
  req.set_key(key);
  pb::MountsResponse resp;
  auto ctx = conn.Context();
  if (grpc::Status st = conn.stub().Mounts(ctx.get(), req, &resp); !st.ok()) return Fail(st);
  return PrintMounts(resp.mounts(), opts.json);
}

int Commit(const ClientOptions& opts, const std::string& name, const std::string& key,
           const Labels& labels) {
  Connection conn(opts);
  pb::CommitSnapshotRequest req;
  req.set_snapshotter(conn.snapshotter());
  req.set_name(name);
  req.set_key(key);
  SetLabels(&req, labels);
  google::protobuf::Empty resp;
  auto ctx = conn.Context();
  if (grpc::Status st = conn.stub().Commit(ctx.get(), req, &resp); !st.ok()) return Fail(st);
  return 0;
}

int Remove(const ClientOptions& opts, const std::string& key) {
  Connection conn(opts);
  pb::RemoveSnapshotRequest req;
  req.set_snapshotter(conn.snapshotter());
  req.set_key(key);
  google::protobuf::Empty resp;
  auto ctx = conn.Context();
  if (grpc::Status st = conn.stub().Remove(ctx.get(), req, &resp); !st.ok()) return Fail(st);
  return 0;
}

int Cleanup(const ClientOptions& opts) {
  Connection conn(opts);
  pb::CleanupRequest req;
  req.set_snapshotter(conn.snapshotter());
  google::protobuf::Empty resp;
  auto ctx = conn.Context();
  if (grpc::Status st = conn.stub().Cleanup(ctx.get(), req, &resp); !st.ok()) return Fail(st);
  return 0;
}

}  // namespace thinsnap::ctl
