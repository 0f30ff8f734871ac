// Bad input over the real gRPC API: a table of requests that must each fail
// with one exact gRPC code and change nothing (the listing with labels and
// timestamps, the fake pool's thin ids and its active devices are compared
// before and after). Odd but valid keys must round-trip byte for byte and
// never reach a device name. Concurrent clients racing for one key: exactly
// one wins.
//
// Everything runs against an in-process server on a temporary unix socket
// with a real Snapshotter and Store over the fake pool.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <latch>
#include <map>
#include <ostream>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "fake/fake_pool.h"
#include "metadata/store.h"
#include "rpc/server.h"
#include "rpc/snapshots_service.h"
#include "serving_stack.h"
#include "snapshot/snapshotter.h"

namespace thinsnap {
namespace {

namespace v1 = containerd::services::snapshots::v1;
using grpc::StatusCode;
using LabelMap = std::map<std::string, std::string>;

constexpr char kMethodPrefix[] = "/containerd.services.snapshots.v1.Snapshots/";

// Every call carries a deadline: a hang is a failure, not a stuck test.
void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
}

// Thin client over the generated stub; one per connection.
class Client {
 public:
  explicit Client(const std::string& socket_path) {
    grpc::ChannelArguments args;
    // A private subchannel, so that concurrent clients really use separate
    // connections instead of sharing one.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channel_ =
        grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(), args);
    stub_ = v1::Snapshots::NewStub(channel_);
  }

  bool WaitConnected() {
    return channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20));
  }

  grpc::Status Prepare(const std::string& key, const std::string& parent,
                       const LabelMap& labels = {}, v1::PrepareSnapshotResponse* out = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::PrepareSnapshotRequest request;
    request.set_key(key);
    request.set_parent(parent);
    request.mutable_labels()->insert(labels.begin(), labels.end());
    v1::PrepareSnapshotResponse ignored;
    return stub_->Prepare(&context, request, out ? out : &ignored);
  }
  grpc::Status View(const std::string& key, const std::string& parent, const LabelMap& labels = {},
                    v1::ViewSnapshotResponse* out = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ViewSnapshotRequest request;
    request.set_key(key);
    request.set_parent(parent);
    request.mutable_labels()->insert(labels.begin(), labels.end());
    v1::ViewSnapshotResponse ignored;
    return stub_->View(&context, request, out ? out : &ignored);
  }
  grpc::Status Mounts(const std::string& key, v1::MountsResponse* out = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::MountsRequest request;
    request.set_key(key);
    v1::MountsResponse ignored;
    return stub_->Mounts(&context, request, out ? out : &ignored);
  }
  grpc::Status Commit(const std::string& name, const std::string& key,
                      const LabelMap& labels = {}) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::CommitSnapshotRequest request;
    request.set_name(name);
    request.set_key(key);
    request.mutable_labels()->insert(labels.begin(), labels.end());
    google::protobuf::Empty response;
    return stub_->Commit(&context, request, &response);
  }
  grpc::Status Remove(const std::string& key) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::RemoveSnapshotRequest request;
    request.set_key(key);
    google::protobuf::Empty response;
    return stub_->Remove(&context, request, &response);
  }
  grpc::Status Stat(const std::string& key, v1::Info* info = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::StatSnapshotRequest request;
    request.set_key(key);
    v1::StatSnapshotResponse response;
    grpc::Status status = stub_->Stat(&context, request, &response);
    if (info != nullptr) *info = response.info();
    return status;
  }
  grpc::Status Usage(const std::string& key) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::UsageRequest request;
    request.set_key(key);
    v1::UsageResponse response;
    return stub_->Usage(&context, request, &response);
  }
  // `info` is sent as given, so callers can set fields the service must ignore.
  grpc::Status Update(const v1::Info& info, const std::vector<std::string>& paths,
                      v1::Info* out = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::UpdateSnapshotRequest request;
    *request.mutable_info() = info;
    for (const std::string& path : paths) request.mutable_update_mask()->add_paths(path);
    v1::UpdateSnapshotResponse response;
    grpc::Status status = stub_->Update(&context, request, &response);
    if (out != nullptr) *out = response.info();
    return status;
  }
  grpc::Status UpdateLabels(const std::string& name, const LabelMap& labels,
                            const std::vector<std::string>& paths) {
    v1::Info info;
    info.set_name(name);
    info.mutable_labels()->insert(labels.begin(), labels.end());
    return Update(info, paths);
  }
  grpc::Status List(const std::vector<std::string>& filters, std::vector<v1::Info>* out = nullptr) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ListSnapshotsRequest request;
    for (const std::string& filter : filters) request.add_filters(filter);
    auto reader = stub_->List(&context, request);
    v1::ListSnapshotsResponse response;
    while (reader->Read(&response)) {
      if (out != nullptr) out->insert(out->end(), response.info().begin(), response.info().end());
    }
    return reader->Finish();
  }

  // Sends `payload` as the serialized request of `method`, bypassing the
  // client's protobuf serializer (which would refuse or warn about some of
  // the bytes the tests need on the wire).
  grpc::Status Raw(const std::string& method, const std::string& payload) {
    grpc::GenericStub generic(channel_);
    grpc::ClientContext context;
    SetDeadline(&context);
    grpc::Slice slice(payload);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    generic.UnaryCall(&context, kMethodPrefix + method, grpc::StubOptions(), &request, &response,
                      [&done](grpc::Status status) { done.set_value(std::move(status)); });
    return done.get_future().get();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Snapshots::Stub> stub_;
};

// Protobuf wire encoding, for requests the generated code will not build.
std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
std::string LengthDelimited(int field, const std::string& bytes) {
  return Varint(static_cast<uint64_t>(field) << 3 | 2) + Varint(bytes.size()) + bytes;
}
// A map<string,string> entry of field `field`.
std::string MapEntry(int field, const std::string& key, const std::string& value) {
  return LengthDelimited(field, LengthDelimited(1, key) + LengthDelimited(2, value));
}

const std::string kBadUtf8 = std::string("bad-\xff\xfe-utf8-\xc3(", 15);
const std::string kLongKey(kMaxKeyBytes + 1, 'k');
const std::string kNulKey = std::string("nul\0inside", 10);

// Everything an error must leave untouched.
struct World {
  std::vector<std::string> snapshots;  // one line per Info, sorted
  std::vector<ThinId> thin_ids;
  std::vector<ThinId> active_ids;

  bool operator==(const World&) const = default;
};

std::string Describe(const v1::Info& info) {
  std::string line = "name=" + info.name() + " parent=" + info.parent() +
                     " kind=" + v1::Kind_Name(info.kind()) +
                     " created=" + info.created_at().ShortDebugString() +
                     " updated=" + info.updated_at().ShortDebugString() + " labels={";
  const LabelMap labels(info.labels().begin(), info.labels().end());
  for (const auto& [k, v] : labels) line += k + "=" + v + ";";
  return line + "}";
}

std::string Print(const World& w) {
  std::string out;
  for (const std::string& s : w.snapshots) out += "  " + s.substr(0, 200) + "\n";
  out += "  thin ids:";
  for (ThinId id : w.thin_ids) out += " " + std::to_string(id);
  out += "\n  active:";
  for (ThinId id : w.active_ids) out += " " + std::to_string(id);
  return out;
}

// The server under test, seeded with:
//   layer   committed root, labels {seed=layer}
//   layer2  committed, parent layer
//   active  active, parent layer, labels {a=1, b=2}
//   view    view, parent layer
class RpcBadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thinsnap-badinput-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_path_ = dir_ + "/thinsnap.sock";
    auto stack = testing::StartServingStack(dir_, socket_path_);
    ASSERT_TRUE(stack.ok()) << stack.status().ToString();
    pool_ = stack->pool;
    snapshotter_ = std::move(stack->snapshotter);
    service_ = std::move(stack->service);
    server_ = std::move(stack->server);
    client_ = std::make_unique<Client>(socket_path_);

    ASSERT_TRUE(client_->Prepare("layer-work", "").ok());
    ASSERT_TRUE(client_->Commit("layer", "layer-work", {{"seed", "layer"}}).ok());
    ASSERT_TRUE(client_->Prepare("layer2-work", "layer").ok());
    ASSERT_TRUE(client_->Commit("layer2", "layer2-work").ok());
    ASSERT_TRUE(client_->Prepare("active", "layer", {{"a", "1"}, {"b", "2"}}).ok());
    ASSERT_TRUE(client_->View("view", "layer").ok());
    seeded_ = Capture();
    ASSERT_EQ(seeded_.snapshots.size(), 4u) << Print(seeded_);
  }

  void TearDown() override {
    client_.reset();
    if (server_) server_->Shutdown(std::chrono::milliseconds(0));
    server_.reset();
    service_.reset();
    snapshotter_.reset();
    std::filesystem::remove_all(dir_);
  }

  World Capture() {
    World w;
    std::vector<v1::Info> infos;
    grpc::Status listed = client_->List({}, &infos);
    EXPECT_TRUE(listed.ok()) << listed.error_message();
    for (const v1::Info& info : infos) w.snapshots.push_back(Describe(info));
    std::sort(w.snapshots.begin(), w.snapshots.end());
    // Removed snapshots leave the pool in the background; Cleanup waits for it.
    EXPECT_TRUE(snapshotter_->Cleanup().ok());
    w.thin_ids = pool_->ThinIds();
    std::sort(w.thin_ids.begin(), w.thin_ids.end());
    w.active_ids = pool_->ActiveIds();
    std::sort(w.active_ids.begin(), w.active_ids.end());
    return w;
  }

  std::string dir_;
  std::string socket_path_;
  std::shared_ptr<testing::FakePoolControl> pool_;
  std::unique_ptr<Snapshotter> snapshotter_;
  std::unique_ptr<SnapshotsService> service_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
  World seeded_;
};

// ---------------------------------------------------------------------------
// The table.

struct BadCase {
  std::string name;
  std::function<grpc::Status(Client&)> call;
  StatusCode code;
  std::string message_part;  // the error message must contain it; "" checks nothing
};

std::string CodeName(StatusCode code) {
  static const std::map<StatusCode, std::string> kNames = {
      {StatusCode::OK, "OK"},
      {StatusCode::CANCELLED, "Cancelled"},
      {StatusCode::UNKNOWN, "Unknown"},
      {StatusCode::INVALID_ARGUMENT, "InvalidArgument"},
      {StatusCode::DEADLINE_EXCEEDED, "DeadlineExceeded"},
      {StatusCode::NOT_FOUND, "NotFound"},
      {StatusCode::ALREADY_EXISTS, "AlreadyExists"},
      {StatusCode::PERMISSION_DENIED, "PermissionDenied"},
      {StatusCode::RESOURCE_EXHAUSTED, "ResourceExhausted"},
      {StatusCode::FAILED_PRECONDITION, "FailedPrecondition"},
      {StatusCode::ABORTED, "Aborted"},
      {StatusCode::OUT_OF_RANGE, "OutOfRange"},
      {StatusCode::UNIMPLEMENTED, "Unimplemented"},
      {StatusCode::INTERNAL, "Internal"},
      {StatusCode::UNAVAILABLE, "Unavailable"},
      {StatusCode::DATA_LOSS, "DataLoss"},
      {StatusCode::UNAUTHENTICATED, "Unauthenticated"},
  };
  auto it = kNames.find(code);
  return it == kNames.end() ? "code " + std::to_string(code) : it->second;
}

// What gtest shows for a case (instead of its bytes).
void PrintTo(const BadCase& bad, std::ostream* os) {
  *os << bad.name << " -> " << CodeName(bad.code);
}

// Each RPC argument that names a snapshot, with a way to send a value in it.
struct KeyField {
  std::string name;
  std::function<grpc::Status(Client&, const std::string&)> send;
  bool empty_is_valid;  // a parent may be empty (root snapshot)
};

std::vector<KeyField> KeyFields() {
  return {
      {"PrepareKey", [](Client& c, const std::string& k) { return c.Prepare(k, "layer"); }, false},
      {"PrepareParent", [](Client& c, const std::string& k) { return c.Prepare("new", k); }, true},
      {"ViewKey", [](Client& c, const std::string& k) { return c.View(k, "layer"); }, false},
      {"ViewParent", [](Client& c, const std::string& k) { return c.View("new", k); }, true},
      {"MountsKey", [](Client& c, const std::string& k) { return c.Mounts(k); }, false},
      {"CommitKey", [](Client& c, const std::string& k) { return c.Commit("new", k); }, false},
      {"CommitName", [](Client& c, const std::string& k) { return c.Commit(k, "active"); }, false},
      {"RemoveKey", [](Client& c, const std::string& k) { return c.Remove(k); }, false},
      {"StatKey", [](Client& c, const std::string& k) { return c.Stat(k); }, false},
      {"UpdateName",
       [](Client& c, const std::string& k) {
         return c.UpdateLabels(k, {{"x", "y"}}, {"labels"});
       },
       false},
      {"UsageKey", [](Client& c, const std::string& k) { return c.Usage(k); }, false},
  };
}

std::vector<BadCase> BadCases() {
  std::vector<BadCase> cases;
  auto add = [&cases](std::string name, StatusCode code,
                      std::function<grpc::Status(Client&)> call) {
    cases.push_back({std::move(name), std::move(call), code, ""});
  };
  const StatusCode kInvalid = StatusCode::INVALID_ARGUMENT;

  // Invalid keys in every argument that names a snapshot.
  for (const KeyField& field : KeyFields()) {
    const std::pair<const char*, std::string> values[] = {
        {"Empty", ""}, {"Over4096Bytes", kLongKey}, {"HoldsNul", kNulKey}};
    for (const auto& [what, value] : values) {
      if (value.empty() && field.empty_is_valid) continue;
      add(field.name + what, kInvalid,
          [send = field.send, value = value](Client& c) { return send(c, value); });
    }
  }

  // Invalid UTF-8 in proto3 string fields. protobuf rejects these while
  // parsing the request, before any handler runs; the server answers
  // InvalidArgument naming the method (gRPC alone would say Internal).
  auto unparsable = [&cases](std::string name, std::string method, std::string payload) {
    const std::string message = "request is not a valid " + method + " message";
    cases.push_back({std::move(name),
                     [method = std::move(method), payload = std::move(payload)](Client& c) {
                       return c.Raw(method, payload);
                     },
                     kInvalid, message});
  };
  unparsable("BadUtf8PrepareKey", "Prepare",
             LengthDelimited(2, kBadUtf8) + LengthDelimited(3, "layer"));
  unparsable("BadUtf8PrepareParent", "Prepare",
             LengthDelimited(2, "new") + LengthDelimited(3, kBadUtf8));
  unparsable("BadUtf8PrepareLabelKey", "Prepare",
             LengthDelimited(2, "new") + MapEntry(4, kBadUtf8, "v"));
  unparsable("BadUtf8ViewLabelValue", "View",
             LengthDelimited(2, "new") + LengthDelimited(3, "layer") + MapEntry(4, "k", kBadUtf8));
  unparsable("BadUtf8CommitName", "Commit",
             LengthDelimited(2, kBadUtf8) + LengthDelimited(3, "active"));
  unparsable("BadUtf8RemoveKey", "Remove", LengthDelimited(2, kBadUtf8));
  unparsable("BadUtf8UpdateLabel", "Update",
             LengthDelimited(2, LengthDelimited(1, "active") + MapEntry(6, "a", kBadUtf8)));
  unparsable("BadUtf8ListFilter", "List", LengthDelimited(2, "name==" + kBadUtf8));
  // Not a protobuf message at all.
  unparsable("UnparsableRequestBytes", "Prepare", std::string("\xff\xff\xff\xff\x0f", 5));
  add("UnknownMethod", StatusCode::UNIMPLEMENTED,
      [](Client& c) { return c.Raw("Snapshot", LengthDelimited(2, "active")); });

  // Parents that cannot be built on.
  add("PrepareParentMissing", StatusCode::NOT_FOUND,
      [](Client& c) { return c.Prepare("new", "missing"); });
  add("ViewParentMissing", StatusCode::NOT_FOUND,
      [](Client& c) { return c.View("new", "missing"); });
  add("PrepareParentActive", kInvalid, [](Client& c) { return c.Prepare("new", "active"); });
  add("PrepareParentView", kInvalid, [](Client& c) { return c.Prepare("new", "view"); });
  add("ViewParentActive", kInvalid, [](Client& c) { return c.View("new", "active"); });
  add("ViewParentView", kInvalid, [](Client& c) { return c.View("new", "view"); });

  // Keys already taken, by every kind.
  add("PrepareKeyOfActive", StatusCode::ALREADY_EXISTS,
      [](Client& c) { return c.Prepare("active", "layer"); });
  add("PrepareKeyOfView", StatusCode::ALREADY_EXISTS,
      [](Client& c) { return c.Prepare("view", ""); });
  add("PrepareKeyOfCommitted", StatusCode::ALREADY_EXISTS,
      [](Client& c) { return c.Prepare("layer2", "layer"); });
  add("PrepareKeyIsItsOwnParent", StatusCode::ALREADY_EXISTS,
      [](Client& c) { return c.Prepare("layer", "layer"); });
  add("ViewKeyOfActive", StatusCode::ALREADY_EXISTS,
      [](Client& c) { return c.View("active", "layer"); });
  add("ViewKeyOfView", StatusCode::ALREADY_EXISTS,
      [](Client& c) { return c.View("view", "layer"); });
  add("ViewKeyOfCommitted", StatusCode::ALREADY_EXISTS,
      [](Client& c) { return c.View("layer", ""); });

  // Commit.
  add("CommitOfView", StatusCode::FAILED_PRECONDITION,
      [](Client& c) { return c.Commit("new", "view"); });
  add("CommitOfCommitted", StatusCode::FAILED_PRECONDITION,
      [](Client& c) { return c.Commit("new", "layer2"); });
  add("CommitOfMissing", StatusCode::NOT_FOUND,
      [](Client& c) { return c.Commit("new", "missing"); });
  add("CommitToCommittedName", StatusCode::ALREADY_EXISTS,
      [](Client& c) { return c.Commit("layer2", "active"); });
  add("CommitToViewName", StatusCode::ALREADY_EXISTS,
      [](Client& c) { return c.Commit("view", "active"); });
  add("CommitToItsOwnKey", StatusCode::ALREADY_EXISTS,
      [](Client& c) { return c.Commit("active", "active"); });
  add("CommitOversizedLabel", kInvalid, [](Client& c) {
    return c.Commit("new", "active", {{"k", std::string(kMaxLabelBytes, 'v')}});
  });
  add("CommitEmptyLabelKey", kInvalid, [](Client& c) {
    return c.Commit("new", "active", {{"", "v"}});
  });

  // Remove.
  add("RemoveWithChildren", StatusCode::FAILED_PRECONDITION,
      [](Client& c) { return c.Remove("layer"); });
  add("RemoveMissing", StatusCode::NOT_FOUND, [](Client& c) { return c.Remove("missing"); });

  // Labels on creation.
  add("PrepareOversizedLabel", kInvalid, [](Client& c) {
    return c.Prepare("new", "layer", {{"key", std::string(kMaxLabelBytes - 2, 'v')}});
  });
  add("PrepareOversizedLabelKey", kInvalid, [](Client& c) {
    return c.Prepare("new", "layer", {{std::string(kMaxLabelBytes + 1, 'k'), ""}});
  });
  add("PrepareEmptyLabelKey", kInvalid, [](Client& c) {
    return c.Prepare("new", "layer", {{"", "v"}});
  });
  add("PrepareLabelKeyHoldsNul", kInvalid, [](Client& c) {
    return c.Prepare("new", "layer", {{kNulKey, "v"}});
  });
  add("ViewOversizedLabel", kInvalid, [](Client& c) {
    return c.View("new", "layer", {{"k", std::string(kMaxLabelBytes, 'v')}});
  });

  // Update: only labels are mutable, and a bad request changes nothing.
  for (const char* path : {"kind", "parent", "name", "created_at", "updated_at"}) {
    add(std::string("UpdateImmutable_") + path, kInvalid, [path](Client& c) {
      v1::Info info;
      info.set_name("active");
      info.set_parent("layer2");
      info.set_kind(v1::COMMITTED);
      info.mutable_created_at()->set_seconds(1);
      return c.Update(info, {path});
    });
  }
  add("UpdateMaskEmptyPath", kInvalid, [](Client& c) {
    return c.UpdateLabels("active", {{"a", "9"}}, {""});
  });
  add("UpdateMaskEmptyLabelKey", kInvalid, [](Client& c) {
    return c.UpdateLabels("active", {{"a", "9"}}, {"labels."});
  });
  add("UpdateMaskWrongCase", kInvalid, [](Client& c) {
    return c.UpdateLabels("active", {{"a", "9"}}, {"Labels"});
  });
  add("UpdateMaskValidThenImmutable", kInvalid, [](Client& c) {
    return c.UpdateLabels("active", {{"a", "9"}}, {"labels.a", "kind"});
  });
  add("UpdateMaskTooManyPaths", kInvalid, [](Client& c) {
    return c.UpdateLabels("active", {{"a", "9"}}, std::vector<std::string>(1025, "labels.a"));
  });
  add("UpdateMaskPathTooLong", kInvalid, [](Client& c) {
    return c.UpdateLabels("active", {{"a", "9"}}, {"labels." + std::string(8192, 'a')});
  });
  add("UpdateOversizedLabel", kInvalid, [](Client& c) {
    return c.UpdateLabels("active", {{"a", std::string(kMaxLabelBytes, 'v')}}, {"labels.a"});
  });
  add("UpdateOversizedLabelWithoutMask", kInvalid, [](Client& c) {
    return c.UpdateLabels("active", {{"a", std::string(kMaxLabelBytes, 'v')}}, {});
  });
  add("UpdateEmptyLabelKey", kInvalid, [](Client& c) {
    return c.UpdateLabels("active", {{"", "v"}}, {"labels"});
  });
  add("UpdateLabelValueHoldsNul", kInvalid, [](Client& c) {
    return c.UpdateLabels("active", {{"a", kNulKey}}, {"labels.a"});
  });
  add("UpdateMissing", StatusCode::NOT_FOUND, [](Client& c) {
    return c.UpdateLabels("missing", {{"a", "1"}}, {"labels"});
  });

  // List filters.
  for (const auto& [what, filter] : std::vector<std::pair<std::string, std::string>>{
           {"UnknownOperator", "name<>layer"},
           {"UnterminatedQuote", "labels.\"seed==layer"},
           {"TrailingComma", "name==layer,"},
           {"SpaceInValue", "name==la yer"},
           {"BadRegex", "name~=/[unclosed/"},
           {"BadRegexRepeat", "name~=|a**|"},
           {"OperatorWithoutField", "==layer"},
       }) {
    add("ListFilter" + what, kInvalid, [filter = filter](Client& c) { return c.List({filter}); });
  }
  add("ListTooManyFilters", kInvalid,
      [](Client& c) { return c.List(std::vector<std::string>(257, "name==layer")); });
  add("ListFilterTooLong", kInvalid,
      [](Client& c) { return c.List({"name==" + std::string(8192, 'a')}); });
  add("ListOneBadFilterAmongGood", kInvalid, [](Client& c) {
    return c.List({"name==layer", "kind=="});
  });

  // Reads of what is not there or has no such property.
  add("MountsOfCommitted", StatusCode::FAILED_PRECONDITION,
      [](Client& c) { return c.Mounts("layer"); });
  add("MountsMissing", StatusCode::NOT_FOUND, [](Client& c) { return c.Mounts("missing"); });
  add("StatMissing", StatusCode::NOT_FOUND, [](Client& c) { return c.Stat("missing"); });
  add("UsageMissing", StatusCode::NOT_FOUND, [](Client& c) { return c.Usage("missing"); });
  add("StatPrefixOfExisting", StatusCode::NOT_FOUND, [](Client& c) { return c.Stat("activ"); });
  add("StatKeyWithTrailingNewline", StatusCode::NOT_FOUND,
      [](Client& c) { return c.Stat("active\n"); });
  return cases;
}

class RpcBadInputTableTest : public RpcBadInputTest,
                             public ::testing::WithParamInterface<BadCase> {};

TEST_P(RpcBadInputTableTest, ExactCodeAndNothingChanges) {
  const BadCase& bad = GetParam();
  const World before = Capture();
  grpc::Status status = bad.call(*client_);
  EXPECT_EQ(status.error_code(), bad.code)
      << "want " << CodeName(bad.code) << ", got " << CodeName(status.error_code()) << ": "
      << status.error_message();
  EXPECT_NE(status.error_message().find(bad.message_part), std::string::npos)
      << "want a message containing \"" << bad.message_part << "\", got \""
      << status.error_message() << "\"";
  const World after = Capture();
  EXPECT_EQ(after, before) << "before:\n" << Print(before) << "\nafter:\n" << Print(after);
  // The server is still serving.
  EXPECT_TRUE(client_->Stat("active").ok());
}

INSTANTIATE_TEST_SUITE_P(Table, RpcBadInputTableTest, ::testing::ValuesIn(BadCases()),
                         [](const ::testing::TestParamInfo<BadCase>& info) {
                           return info.param.name;
                         });

TEST(RpcBadInputTableSize, AtLeastFiftyDistinctCases) {
  std::vector<std::string> names;
  for (const BadCase& c : BadCases()) names.push_back(c.name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end()) << "duplicate name";
  EXPECT_GE(names.size(), 50u);
}

// ---------------------------------------------------------------------------
// Odd but valid keys: byte-exact round trips, never in a device name.

class RpcOddKeyTest : public RpcBadInputTest, public ::testing::WithParamInterface<std::string> {
 protected:
  // Device paths come from thin ids only.
  static void ExpectDeviceSource(
      const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts,
      const std::string& key) {
    ASSERT_EQ(mounts.size(), 1);
    EXPECT_TRUE(std::regex_match(mounts[0].source(), std::regex("/dev/mapper/fake-thin-[0-9]+")))
        << mounts[0].source();
    EXPECT_EQ(mounts[0].target(), "");
    for (const std::string& option : mounts[0].options()) {
      EXPECT_TRUE(option == "rw" || option == "ro") << option;
    }
    if (key.size() > 2) {
      EXPECT_EQ(mounts[0].source().find(key), std::string::npos);
    }
  }

  // A second key derived from `key`, distinct from it and still valid.
  static std::string Variant(const std::string& key, char c) {
    std::string out = key;
    if (out.size() < kMaxKeyBytes) {
      out.push_back(c);
    } else {
      out.back() = c;
    }
    return out;
  }

  bool Listed(const std::string& name, v1::Kind kind) {
    std::vector<v1::Info> infos;
    EXPECT_TRUE(client_->List({}, &infos).ok());
    return std::any_of(infos.begin(), infos.end(),
                       [&](const v1::Info& i) { return i.name() == name && i.kind() == kind; });
  }
};

TEST_P(RpcOddKeyTest, RoundTripsExactly) {
  const std::string& key = GetParam();
  const std::string name = Variant(key, '#');
  const std::string view = Variant(key, '@');

  v1::PrepareSnapshotResponse prepared;
  grpc::Status st =
      client_->Prepare(key, "layer", {{key.substr(0, 100), key.substr(0, 100)}}, &prepared);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ExpectDeviceSource(prepared.mounts(), key);

  v1::Info info;
  ASSERT_TRUE(client_->Stat(key, &info).ok());
  EXPECT_EQ(info.name(), key);
  EXPECT_EQ(info.parent(), "layer");
  EXPECT_EQ(info.kind(), v1::ACTIVE);
  EXPECT_EQ(info.labels().at(key.substr(0, 100)), key.substr(0, 100));
  EXPECT_TRUE(Listed(key, v1::ACTIVE));
  // Keys are compared as bytes: nothing normalises them.
  EXPECT_EQ(client_->Stat(Variant(key, '/')).error_code(), StatusCode::NOT_FOUND);

  v1::MountsResponse mounts;
  ASSERT_TRUE(client_->Mounts(key, &mounts).ok());
  ExpectDeviceSource(mounts.mounts(), key);
  EXPECT_EQ(mounts.mounts(0).source(), prepared.mounts(0).source());
  ASSERT_TRUE(client_->Usage(key).ok());

  v1::Info updated;
  v1::Info request;
  request.set_name(key);
  (*request.mutable_labels())["odd"] = key.substr(0, 200);
  ASSERT_TRUE(client_->Update(request, {"labels.odd"}, &updated).ok());
  EXPECT_EQ(updated.name(), key);
  EXPECT_EQ(updated.labels().at("odd"), key.substr(0, 200));

  st = client_->Commit(name, key);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(client_->Stat(key).error_code(), StatusCode::NOT_FOUND);
  ASSERT_TRUE(client_->Stat(name, &info).ok());
  EXPECT_EQ(info.name(), name);
  EXPECT_EQ(info.kind(), v1::COMMITTED);
  EXPECT_TRUE(Listed(name, v1::COMMITTED));

  v1::ViewSnapshotResponse viewed;
  ASSERT_TRUE(client_->View(view, name, {}, &viewed).ok());
  ExpectDeviceSource(viewed.mounts(), key);
  ASSERT_TRUE(client_->Stat(view, &info).ok());
  EXPECT_EQ(info.parent(), name);
  EXPECT_EQ(info.kind(), v1::VIEW);

  // Filters see the exact bytes too (quoted with Go escapes where needed).
  if (key.find_first_of("\"\\\n\t") == std::string::npos) {
    std::vector<v1::Info> infos;
    ASSERT_TRUE(client_->List({"parent==\"" + name + "\""}, &infos).ok());
    ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].name(), view);
  }

  EXPECT_EQ(client_->Remove(name).error_code(), StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(client_->Remove(view).ok());
  ASSERT_TRUE(client_->Remove(name).ok());
  EXPECT_EQ(Capture(), seeded_) << Print(Capture());
}

INSTANTIATE_TEST_SUITE_P(
    Keys, RpcOddKeyTest,
    ::testing::Values("/", "..", ".", "../../x", "../../../etc/passwd", " ", "  spaced  key ",
                      "ns/id/name", "default/42/sha256:abc", "/dev/mapper/control",
                      "\u65e5\u672c\u8a9e/\u043a\u043b\u044e\u0447/\U0001F642", "a\tb\nc",
                      "quote\"back\\slash", "%s%n%x", "-rf", std::string(kMaxKeyBytes, 'k'),
                      std::string(kMaxKeyBytes / 2, '/') + std::string(kMaxKeyBytes / 2, '.')),
    [](const ::testing::TestParamInfo<std::string>& info) {
      return "Key" + std::to_string(info.index);
    });

// ---------------------------------------------------------------------------
// Races between clients on separate connections.

constexpr int kRacers = 16;

class RpcRaceTest : public RpcBadInputTest {
 protected:
  void SetUp() override {
    RpcBadInputTest::SetUp();
    for (int i = 0; i < kRacers; ++i) {
      racers_.push_back(std::make_unique<Client>(socket_path_));
      ASSERT_TRUE(racers_.back()->WaitConnected()) << "racer " << i;
    }
  }
  void TearDown() override {
    racers_.clear();
    RpcBadInputTest::TearDown();
  }

  // Runs `call(client, i)` on every racer at once; returns the codes by racer.
  std::vector<StatusCode> Race(const std::function<grpc::Status(Client&, int)>& call) {
    std::latch start(kRacers);
    std::vector<std::future<StatusCode>> results;
    for (int i = 0; i < kRacers; ++i) {
      results.push_back(std::async(std::launch::async, [&, i] {
        start.arrive_and_wait();
        return call(*racers_[i], i).error_code();
      }));
    }
    std::vector<StatusCode> codes;
    for (auto& r : results) codes.push_back(r.get());
    return codes;
  }

  static int Count(const std::vector<StatusCode>& codes, StatusCode code) {
    return static_cast<int>(std::count(codes.begin(), codes.end(), code));
  }

  std::vector<std::unique_ptr<Client>> racers_;
};

TEST_F(RpcRaceTest, SameKeyPreparedBySixteenClientsExactlyOneWins) {
  for (int round = 0; round < 10; ++round) {
    const std::string key = "race/" + std::to_string(round);
    const World before = Capture();
    auto codes = Race([&](Client& c, int) { return c.Prepare(key, "layer"); });
    EXPECT_EQ(Count(codes, StatusCode::OK), 1) << "round " << round;
    EXPECT_EQ(Count(codes, StatusCode::ALREADY_EXISTS), kRacers - 1) << "round " << round;
    // Exactly one device more, and it is active.
    const World after = Capture();
    EXPECT_EQ(after.snapshots.size(), before.snapshots.size() + 1);
    EXPECT_EQ(after.thin_ids.size(), before.thin_ids.size() + 1);
    EXPECT_EQ(after.active_ids.size(), before.active_ids.size() + 1);
  }
}

TEST_F(RpcRaceTest, PrepareAndViewOfOneKeyExactlyOneWins) {
  for (int round = 0; round < 10; ++round) {
    const std::string key = "mixed/" + std::to_string(round);
    const World before = Capture();
    auto codes = Race(
        [&](Client& c, int i) { return i % 2 ? c.View(key, "layer") : c.Prepare(key, "layer2"); });
    EXPECT_EQ(Count(codes, StatusCode::OK), 1) << "round " << round;
    EXPECT_EQ(Count(codes, StatusCode::ALREADY_EXISTS), kRacers - 1) << "round " << round;
    EXPECT_EQ(Capture().thin_ids.size(), before.thin_ids.size() + 1);
  }
}

TEST_F(RpcRaceTest, CommitOfOneKeyToManyNamesExactlyOneWins) {
  for (int round = 0; round < 10; ++round) {
    const std::string key = "commit-race/" + std::to_string(round);
    ASSERT_TRUE(client_->Prepare(key, "layer").ok());
    const World before = Capture();
    auto codes =
        Race([&](Client& c, int i) { return c.Commit(key + "/name" + std::to_string(i), key); });
    EXPECT_EQ(Count(codes, StatusCode::OK), 1) << "round " << round;
    // The losers find the key either gone (renamed) or no longer active.
    EXPECT_EQ(Count(codes, StatusCode::NOT_FOUND) + Count(codes, StatusCode::FAILED_PRECONDITION),
              kRacers - 1)
        << "round " << round;
    const World after = Capture();
    EXPECT_EQ(after.snapshots.size(), before.snapshots.size());
    EXPECT_EQ(after.thin_ids, before.thin_ids);
    EXPECT_EQ(after.active_ids.size(), before.active_ids.size() - 1);
  }
}

TEST_F(RpcRaceTest, RemoveOfOneKeyExactlyOneWins) {
  for (int round = 0; round < 10; ++round) {
    const std::string key = "remove-race/" + std::to_string(round);
    ASSERT_TRUE(client_->Prepare(key, "layer").ok());
    auto codes = Race([&](Client& c, int) { return c.Remove(key); });
    EXPECT_EQ(Count(codes, StatusCode::OK), 1) << "round " << round;
    EXPECT_EQ(Count(codes, StatusCode::NOT_FOUND), kRacers - 1) << "round " << round;
    EXPECT_EQ(Capture(), seeded_) << Print(Capture());
  }
}

TEST_F(RpcRaceTest, RemoveOfParentRacingPrepareOfChild) {
  // Either the child is created (and the parent stays) or the parent is
  // removed (and the child fails NotFound): never a child without a parent.
  for (int round = 0; round < 10; ++round) {
    const std::string parent = "parent/" + std::to_string(round);
    ASSERT_TRUE(client_->Prepare(parent + "/work", "").ok());
    ASSERT_TRUE(client_->Commit(parent, parent + "/work").ok());
    auto codes = Race([&](Client& c, int i) {
      return i == 0 ? c.Remove(parent) : c.Prepare(parent + "/child" + std::to_string(i), parent);
    });
    std::vector<v1::Info> infos;
    ASSERT_TRUE(client_->List({}, &infos).ok());
    std::set<std::string> names;
    for (const v1::Info& info : infos) names.insert(info.name());
    for (const v1::Info& info : infos) {
      if (!info.parent().empty()) {
        EXPECT_TRUE(names.count(info.parent())) << info.name() << " lost parent " << info.parent();
      }
    }
    if (codes[0] == StatusCode::OK) {
      EXPECT_EQ(Count(codes, StatusCode::OK), 1) << "children created after parent removal";
    } else {
      EXPECT_EQ(codes[0], StatusCode::FAILED_PRECONDITION);
      for (int i = 1; i < kRacers; ++i) {
        if (codes[i] == StatusCode::OK) {
          ASSERT_TRUE(client_->Remove(parent + "/child" + std::to_string(i)).ok());
        } else {
          EXPECT_EQ(codes[i], StatusCode::NOT_FOUND);
        }
      }
      ASSERT_TRUE(client_->Remove(parent).ok());
    }
    EXPECT_EQ(Capture(), seeded_) << Print(Capture());
  }
}

}  // namespace
}  // namespace thinsnap
