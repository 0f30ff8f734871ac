// End-to-end tests of the gRPC layer: a real server on a temporary unix
// socket, a generated client stub, and a real Snapshotter over the fake pool.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <thread>

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

std::string MakeTempDir() {
  char tmpl[] = "/tmp/thinsnap-rpc-XXXXXX";
  EXPECT_NE(mkdtemp(tmpl), nullptr);
  return tmpl;
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st.st_mode;
}

// Leaves a socket file at `path` with nothing listening, as a killed daemon does.
void MakeDeadSocket(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  ASSERT_TRUE(S_ISSOCK(ModeOf(path)));
}

std::unique_ptr<v1::Snapshots::Stub> Connect(const std::string& socket_path) {
  return v1::Snapshots::NewStub(
      grpc::CreateChannel("unix:" + socket_path, grpc::InsecureChannelCredentials()));
}

class RpcServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    socket_path_ = dir_ + "/run/thinsnap.sock";
    auto stack = testing::StartServingStack(dir_, socket_path_);
    ASSERT_TRUE(stack.ok()) << stack.status().ToString();
    pool_ = stack->pool;
    snapshotter_ = std::move(stack->snapshotter);
    service_ = std::move(stack->service);
    server_ = std::move(stack->server);
    stub_ = Connect(socket_path_);
  }

  void TearDown() override {
    stub_.reset();
    server_.reset();
    service_.reset();
    snapshotter_.reset();
    std::filesystem::remove_all(dir_);
  }

  grpc::Status Prepare(const std::string& key, const std::string& parent,
                       v1::PrepareSnapshotResponse* response = nullptr,
                       const std::map<std::string, std::string>& labels = {}) {
    grpc::ClientContext context;
    v1::PrepareSnapshotRequest request;
    request.set_key(key);
    request.set_parent(parent);
    request.mutable_labels()->insert(labels.begin(), labels.end());
    v1::PrepareSnapshotResponse ignored;
    return stub_->Prepare(&context, request, response ? response : &ignored);
  }
  grpc::Status View(const std::string& key, const std::string& parent,
                    v1::ViewSnapshotResponse* response = nullptr) {
    grpc::ClientContext context;
    v1::ViewSnapshotRequest request;
    request.set_key(key);
    request.set_parent(parent);
    v1::ViewSnapshotResponse ignored;
    return stub_->View(&context, request, response ? response : &ignored);
  }
  grpc::Status Commit(const std::string& name, const std::string& key,
                      const std::map<std::string, std::string>& labels = {}) {
    grpc::ClientContext context;
    v1::CommitSnapshotRequest request;
    request.set_name(name);
    request.set_key(key);
    request.mutable_labels()->insert(labels.begin(), labels.end());
    google::protobuf::Empty response;
    return stub_->Commit(&context, request, &response);
  }
  grpc::Status Remove(const std::string& key) {
    grpc::ClientContext context;
    v1::RemoveSnapshotRequest request;
    request.set_key(key);
    google::protobuf::Empty response;
    return stub_->Remove(&context, request, &response);
  }
  grpc::Status Stat(const std::string& key, v1::Info* info = nullptr) {
    grpc::ClientContext context;
    v1::StatSnapshotRequest request;
    request.set_key(key);
    v1::StatSnapshotResponse response;
    grpc::Status status = stub_->Stat(&context, request, &response);
    if (info != nullptr) *info = response.info();
    return status;
  }
  grpc::Status Mounts(const std::string& key, v1::MountsResponse* response) {
    grpc::ClientContext context;
    v1::MountsRequest request;
    request.set_key(key);
    return stub_->Mounts(&context, request, response);
  }
  grpc::Status Update(const std::string& name, const std::map<std::string, std::string>& labels,
                      const std::vector<std::string>& paths, v1::Info* info = nullptr) {
    grpc::ClientContext context;
    v1::UpdateSnapshotRequest request;
    request.mutable_info()->set_name(name);
    request.mutable_info()->mutable_labels()->insert(labels.begin(), labels.end());
    for (const std::string& path : paths) request.mutable_update_mask()->add_paths(path);
    v1::UpdateSnapshotResponse response;
    grpc::Status status = stub_->Update(&context, request, &response);
    if (info != nullptr) *info = response.info();
    return status;
  }
  // Returns the names in each streamed message.
  grpc::Status List(const std::vector<std::string>& filters,
                    std::vector<std::vector<std::string>>* batches) {
    grpc::ClientContext context;
    v1::ListSnapshotsRequest request;
    for (const std::string& filter : filters) request.add_filters(filter);
    auto reader = stub_->List(&context, request);
    v1::ListSnapshotsResponse response;
    while (reader->Read(&response)) {
      std::vector<std::string> names;
      for (const v1::Info& info : response.info()) names.push_back(info.name());
      batches->push_back(std::move(names));
    }
    return reader->Finish();
  }
  std::vector<std::string> ListNames(const std::vector<std::string>& filters) {
    std::vector<std::vector<std::string>> batches;
    grpc::Status status = List(filters, &batches);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<std::string> names;
    for (const auto& batch : batches) names.insert(names.end(), batch.begin(), batch.end());
    std::sort(names.begin(), names.end());
    return names;
  }
  // 300 snapshots with a 4,000-byte label each: a List of 1.2 MB, past a
  // stream's flow-control window.
  void PrepareBigListing() {
    const std::string big(4000, 'x');
    for (int i = 0; i < 300; ++i) {
      char key[32];
      std::snprintf(key, sizeof(key), "default/%03d", i);
      ASSERT_TRUE(Prepare(key, "", nullptr, {{"big", big}}).ok()) << key;
    }
  }

  // A committed root layer named `name`.
  void MakeLayer(const std::string& name, const std::string& parent = "") {
    ASSERT_TRUE(Prepare(name + "-active", parent).ok());
    ASSERT_TRUE(Commit(name, name + "-active").ok());
  }

  std::string dir_;
  std::string socket_path_;
  std::shared_ptr<testing::FakePoolControl> pool_;
  std::unique_ptr<Snapshotter> snapshotter_;
  std::unique_ptr<SnapshotsService> service_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::Snapshots::Stub> stub_;
};

TEST(ToGrpcStatusTest, MapsEveryCodeExactly) {
  EXPECT_TRUE(ToGrpcStatus(Status::Ok()).ok());
  const std::pair<Status, grpc::StatusCode> cases[] = {
      {Status::NotFound("m"), grpc::StatusCode::NOT_FOUND},
      {Status::AlreadyExists("m"), grpc::StatusCode::ALREADY_EXISTS},
      {Status::FailedPrecondition("m"), grpc::StatusCode::FAILED_PRECONDITION},
      {Status::InvalidArgument("m"), grpc::StatusCode::INVALID_ARGUMENT},
      {Status::ResourceExhausted("m"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {Status::Unavailable("m"), grpc::StatusCode::UNAVAILABLE},
      {Status::Internal("m"), grpc::StatusCode::INTERNAL},
  };
  for (const auto& [status, code] : cases) {
    grpc::Status mapped = ToGrpcStatus(status);
    EXPECT_EQ(mapped.error_code(), code) << status.ToString();
    EXPECT_EQ(mapped.error_message(), "m");
  }
}

TEST_F(RpcServiceTest, PrepareViewAndMountsShape) {
  v1::PrepareSnapshotResponse prepared;
  ASSERT_TRUE(Prepare("default/1/rw", "", &prepared).ok());
  ASSERT_EQ(prepared.mounts_size(), 1);
  const containerd::types::Mount& rw = prepared.mounts(0);
  EXPECT_EQ(rw.type(), "ext4");
  EXPECT_FALSE(rw.source().empty());
  EXPECT_EQ(rw.target(), "");
  EXPECT_EQ(std::vector<std::string>(rw.options().begin(), rw.options().end()),
            std::vector<std::string>{"rw"});

  v1::MountsResponse mounts;
  ASSERT_TRUE(Mounts("default/1/rw", &mounts).ok());
  ASSERT_EQ(mounts.mounts_size(), 1);
  EXPECT_EQ(mounts.mounts(0).SerializeAsString(), rw.SerializeAsString());

  ASSERT_TRUE(Commit("default/2/layer", "default/1/rw").ok());
  v1::ViewSnapshotResponse viewed;
  ASSERT_TRUE(View("default/3/ro", "default/2/layer", &viewed).ok());
  ASSERT_EQ(viewed.mounts_size(), 1);
  EXPECT_EQ(viewed.mounts(0).type(), "ext4");
  EXPECT_NE(viewed.mounts(0).source(), rw.source());
  EXPECT_EQ(std::vector<std::string>(viewed.mounts(0).options().begin(),
                                     viewed.mounts(0).options().end()),
            std::vector<std::string>{"ro"});
}

TEST_F(RpcServiceTest, StatReportsInfoWithTimestamps) {
  const int64_t before = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  MakeLayer("base");
  ASSERT_TRUE(Prepare("child", "base", nullptr, {{"k", "v"}}).ok());

  v1::Info info;
  ASSERT_TRUE(Stat("child", &info).ok());
  EXPECT_EQ(info.name(), "child");
  EXPECT_EQ(info.parent(), "base");
  EXPECT_EQ(info.kind(), v1::ACTIVE);
  EXPECT_EQ(info.labels().at("k"), "v");
  EXPECT_GE(info.created_at().seconds(), before);
  EXPECT_LT(info.created_at().seconds(), before + 60);
  EXPECT_GE(info.created_at().nanos(), 0);
  EXPECT_GE(info.updated_at().seconds(), info.created_at().seconds());

  ASSERT_TRUE(Stat("base", &info).ok());
  EXPECT_EQ(info.kind(), v1::COMMITTED);
  EXPECT_EQ(info.parent(), "");
  ASSERT_TRUE(View("v", "base").ok());
  ASSERT_TRUE(Stat("v", &info).ok());
  EXPECT_EQ(info.kind(), v1::VIEW);
}

TEST_F(RpcServiceTest, NotFoundPaths) {
  v1::MountsResponse mounts;
  EXPECT_EQ(Stat("missing").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Mounts("missing", &mounts).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Commit("name", "missing").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Remove("missing").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Update("missing", {}, {}).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Prepare("k", "missing-parent").error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext context;
  v1::UsageRequest request;
  request.set_key("missing");
  v1::UsageResponse usage;
  EXPECT_EQ(stub_->Usage(&context, request, &usage).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(RpcServiceTest, AlreadyExistsPaths) {
  MakeLayer("layer");
  ASSERT_TRUE(Prepare("a", "").ok());
  EXPECT_EQ(Prepare("a", "").error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(View("a", "layer").error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Prepare("layer", "").error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Commit("layer", "a").error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(RpcServiceTest, FailedPreconditionPaths) {
  MakeLayer("layer");
  ASSERT_TRUE(View("v", "layer").ok());
  v1::MountsResponse mounts;
  EXPECT_EQ(Mounts("layer", &mounts).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Commit("c", "v").error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Remove("layer").error_code(), grpc::StatusCode::FAILED_PRECONDITION);  // has a child
}

TEST_F(RpcServiceTest, InvalidArgumentPaths) {
  ASSERT_TRUE(Prepare("active", "").ok());
  EXPECT_EQ(Prepare("", "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Prepare(std::string(4097, 'k'), "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Prepare(std::string("a\0b", 3), "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Prepare("k", "", nullptr, {{"big", std::string(5000, 'v')}}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Prepare("k", "active").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Commit("", "active").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Update("active", {}, {"kind"}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Update("active", {}, {std::string(9000, 'l')}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  std::vector<std::vector<std::string>> batches;
  EXPECT_EQ(List({"name=="}, &batches).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(List(std::vector<std::string>(257, "name==a"), &batches).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(batches.empty());
}

TEST_F(RpcServiceTest, ResourceExhaustedWhenPoolNearlyFull) {
  pool_->SetDataUsage(95, 100);
  EXPECT_EQ(Prepare("k", "").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(RpcServiceTest, OversizedRequestIsRejectedByTheServer) {
  grpc::Status status = Prepare("k", "", nullptr, {{"big", std::string(5 << 20, 'v')}});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
}

TEST_F(RpcServiceTest, UnavailableAfterClose) {
  snapshotter_->Close();
  EXPECT_EQ(Prepare("k", "").error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Stat("k").error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(RpcServiceTest, CommitRemoveAndCleanup) {
  ASSERT_TRUE(Prepare("a", "").ok());
  ASSERT_TRUE(Commit("layer", "a", {{"l", "1"}}).ok());
  EXPECT_EQ(Stat("a").error_code(), grpc::StatusCode::NOT_FOUND);
  v1::Info info;
  ASSERT_TRUE(Stat("layer", &info).ok());
  EXPECT_EQ(info.labels().at("l"), "1");
  ASSERT_TRUE(Remove("layer").ok());
  EXPECT_EQ(Stat("layer").error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext context;
  v1::CleanupRequest request;
  google::protobuf::Empty response;
  EXPECT_TRUE(stub_->Cleanup(&context, request, &response).ok());
}

TEST_F(RpcServiceTest, UsageOfActiveSnapshot) {
  ASSERT_TRUE(Prepare("a", "").ok());
  std::vector<ThinId> active = pool_->ActiveIds();
  ASSERT_EQ(active.size(), 1u);
  pool_->SetMappedBytes(active[0], 3 << 20);
  grpc::ClientContext context;
  v1::UsageRequest request;
  request.set_key("a");
  v1::UsageResponse usage;
  ASSERT_TRUE(stub_->Usage(&context, request, &usage).ok());
  EXPECT_EQ(usage.size(), 3 << 20);
  EXPECT_GE(usage.inodes(), 0);
}

TEST_F(RpcServiceTest, ListStreamsInBatchesOfAtMostOneHundred) {
  std::vector<std::string> expected;
  for (int i = 0; i < 250; ++i) {
    char key[32];
    std::snprintf(key, sizeof(key), "default/%03d", i);
    ASSERT_TRUE(Prepare(key, "").ok()) << key;
    expected.push_back(key);
  }
  std::vector<std::vector<std::string>> batches;
  ASSERT_TRUE(List({}, &batches).ok());
  std::vector<size_t> sizes;
  std::vector<std::string> names;
  for (const auto& batch : batches) {
    sizes.push_back(batch.size());
    names.insert(names.end(), batch.begin(), batch.end());
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{100, 100, 50}));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, expected);
}

// Each Info carries its own snapshot's fields only: nothing of one snapshot
// may show up on another, in its batch or the next.
TEST_F(RpcServiceTest, ListBatchesCarryOnlyEachSnapshotsOwnFields) {
  MakeLayer("layer");
  for (int i = 0; i < 250; ++i) {
    char key[32];
    std::snprintf(key, sizeof(key), "default/%03d", i);
    std::map<std::string, std::string> labels;
    if (i % 2 == 0) labels = {{"even", std::to_string(i)}};
    ASSERT_TRUE(Prepare(key, i % 3 == 0 ? "layer" : "", nullptr, labels).ok()) << key;
  }
  grpc::ClientContext context;
  auto reader = stub_->List(&context, v1::ListSnapshotsRequest());
  v1::ListSnapshotsResponse response;
  int seen = 0;
  while (reader->Read(&response)) {
    for (const v1::Info& info : response.info()) {
      ++seen;
      if (info.name() == "layer") {
        EXPECT_EQ(info.kind(), v1::COMMITTED);
        EXPECT_EQ(info.parent(), "");
        EXPECT_TRUE(info.labels().empty());
        continue;
      }
      const int i = std::atoi(info.name().c_str() + std::strlen("default/"));
      EXPECT_EQ(info.kind(), v1::ACTIVE) << info.name();
      EXPECT_EQ(info.parent(), i % 3 == 0 ? "layer" : "") << info.name();
      if (i % 2 == 0) {
        ASSERT_EQ(info.labels().size(), 1u) << info.name();
        EXPECT_EQ(info.labels().at("even"), std::to_string(i));
      } else {
        EXPECT_TRUE(info.labels().empty()) << info.name();
      }
      EXPECT_GT(info.created_at().seconds(), 0) << info.name();
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(seen, 251);
}

// A client that stops reading mid-List stalls that List alone: the walk is
// done before the first batch is sent, and the rest of the listing arrives
// when the client reads again.
TEST_F(RpcServiceTest, AListNobodyReadsBlocksNoOtherCall) {
  ASSERT_NO_FATAL_FAILURE(PrepareBigListing());
  grpc::ClientContext context;
  auto reader = stub_->List(&context, v1::ListSnapshotsRequest());
  v1::ListSnapshotsResponse response;
  ASSERT_TRUE(reader->Read(&response));
  int seen = response.info_size();

  ASSERT_TRUE(Prepare("other", "").ok());
  ASSERT_TRUE(Remove("other").ok());
  ASSERT_TRUE(Prepare("default/000-child", "").ok());

  while (reader->Read(&response)) seen += response.info_size();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(seen, 300);  // walked before the Prepare
}

// A client that goes away mid-List ends it, and the server serves on.
TEST_F(RpcServiceTest, AListCancelledMidStreamEndsAndTheServerServesOn) {
  ASSERT_NO_FATAL_FAILURE(PrepareBigListing());
  {
    grpc::ClientContext context;
    auto reader = stub_->List(&context, v1::ListSnapshotsRequest());
    v1::ListSnapshotsResponse response;
    ASSERT_TRUE(reader->Read(&response));
    context.TryCancel();
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_EQ(ListNames({}).size(), 300u);
}

TEST_F(RpcServiceTest, ListEmptyAndFiltered) {
  EXPECT_TRUE(ListNames({}).empty());
  MakeLayer("l1");
  ASSERT_TRUE(Prepare("a1", "l1", nullptr, {{"team", "x"}}).ok());
  ASSERT_TRUE(Prepare("a2", "", nullptr, {{"team", "y"}}).ok());
  ASSERT_TRUE(View("v1", "l1").ok());
  EXPECT_EQ(ListNames({}), (std::vector<std::string>{"a1", "a2", "l1", "v1"}));
  EXPECT_EQ(ListNames({"kind==committed"}), (std::vector<std::string>{"l1"}));
  EXPECT_EQ(ListNames({"parent==l1"}), (std::vector<std::string>{"a1", "v1"}));
  EXPECT_EQ(ListNames({"labels.team==x", "kind==view"}), (std::vector<std::string>{"a1", "v1"}));
  EXPECT_EQ(ListNames({"labels.team,kind==active"}), (std::vector<std::string>{"a1", "a2"}));
}

TEST_F(RpcServiceTest, UpdateWithMasks) {
  ASSERT_TRUE(Prepare("a", "", nullptr, {{"a", "1"}, {"b", "2"}, {"c", "3"}}).ok());
  v1::Info created;
  ASSERT_TRUE(Stat("a", &created).ok());

  // labels.<key>: set one, delete one absent from info, leave the rest.
  v1::Info info;
  ASSERT_TRUE(Update("a", {{"a", "10"}, {"d", "ignored"}}, {"labels.a", "labels.b"}, &info).ok());
  EXPECT_EQ(info.name(), "a");
  EXPECT_EQ(info.kind(), v1::ACTIVE);
  EXPECT_EQ((std::map<std::string, std::string>(info.labels().begin(), info.labels().end())),
            (std::map<std::string, std::string>{{"a", "10"}, {"c", "3"}}));
  EXPECT_EQ(info.created_at().SerializeAsString(), created.created_at().SerializeAsString());
  EXPECT_GE(info.updated_at().seconds(), created.updated_at().seconds());

  // "labels" replaces them all.
  ASSERT_TRUE(Update("a", {{"x", "1"}}, {"labels"}, &info).ok());
  EXPECT_EQ((std::map<std::string, std::string>(info.labels().begin(), info.labels().end())),
            (std::map<std::string, std::string>{{"x", "1"}}));

  // No mask means all mutable fields, i.e. all labels.
  ASSERT_TRUE(Update("a", {{"y", "2"}}, {}, &info).ok());
  EXPECT_EQ((std::map<std::string, std::string>(info.labels().begin(), info.labels().end())),
            (std::map<std::string, std::string>{{"y", "2"}}));
  v1::Info stat;
  ASSERT_TRUE(Stat("a", &stat).ok());
  EXPECT_EQ(stat.labels().size(), 1u);
  EXPECT_EQ(stat.labels().at("y"), "2");
}

TEST_F(RpcServiceTest, NamespaceHeaderIsNeitherRequiredNorPartitioning) {
  {
    grpc::ClientContext context;
    context.AddMetadata("containerd-namespace", "default");
    v1::PrepareSnapshotRequest request;
    request.set_key("default/1/a");
    request.set_snapshotter("some-other-name");  // ignored: one snapshotter per socket
    v1::PrepareSnapshotResponse response;
    ASSERT_TRUE(stub_->Prepare(&context, request, &response).ok());
  }
  // Another namespace (and no namespace, as containerd's GC calls) sees the
  // same global keys.
  {
    grpc::ClientContext context;
    context.AddMetadata("containerd-namespace", "other");
    v1::StatSnapshotRequest request;
    request.set_key("default/1/a");
    v1::StatSnapshotResponse response;
    EXPECT_TRUE(stub_->Stat(&context, request, &response).ok());
  }
  EXPECT_EQ(ListNames({}), std::vector<std::string>{"default/1/a"});
  EXPECT_TRUE(Remove("default/1/a").ok());
}

TEST_F(RpcServiceTest, SocketIs0660InA0700Directory) {
  EXPECT_TRUE(S_ISSOCK(ModeOf(socket_path_)));
  EXPECT_EQ(ModeOf(socket_path_) & 07777, 0660u);
  EXPECT_EQ(ModeOf(dir_ + "/run") & 07777, 0700u);
}

TEST_F(RpcServiceTest, ShutdownRemovesTheSocket) {
  server_->Shutdown(std::chrono::seconds(5));
  EXPECT_FALSE(std::filesystem::exists(socket_path_));
  server_->Shutdown(std::chrono::seconds(5));  // idempotent
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

// A service whose Stat takes a while, to observe graceful shutdown.
class SlowService final : public v1::Snapshots::Service {
 public:
  std::promise<void> started;
  grpc::Status Stat(grpc::ServerContext*, const v1::StatSnapshotRequest* request,
                    v1::StatSnapshotResponse* response) override {
    started.set_value();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    response->mutable_info()->set_name(request->key());
    return grpc::Status::OK;
  }
};

TEST_F(ServerTest, RemovesStaleSocketAndServes) {
  const std::string path = dir_ + "/thinsnap.sock";
  MakeDeadSocket(path);
  SlowService service;
  auto server = Server::Start(path, &service);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_EQ(ModeOf(path) & 07777, 0660u);
  grpc::ClientContext context;
  v1::StatSnapshotRequest request;
  request.set_key("k");
  v1::StatSnapshotResponse response;
  ASSERT_TRUE(Connect(path)->Stat(&context, request, &response).ok());
  EXPECT_EQ(response.info().name(), "k");
}

TEST_F(ServerTest, RefusesWhenAServerIsLive) {
  const std::string path = dir_ + "/thinsnap.sock";
  SlowService service;
  auto first = Server::Start(path, &service);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = Server::Start(path, &service);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kFailedPrecondition) << second.status().ToString();
  EXPECT_TRUE(S_ISSOCK(ModeOf(path)));
}

TEST_F(ServerTest, RefusesToRemoveANonSocket) {
  const std::string path = dir_ + "/thinsnap.sock";
  std::ofstream(path) << "precious";
  SlowService service;
  auto server = Server::Start(path, &service);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), Code::kFailedPrecondition);
  std::ifstream in(path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(ServerTest, TightensOwnDedicatedDirectoryButNotASharedOne) {
  const std::string dedicated = dir_ + "/dedicated";
  ASSERT_EQ(mkdir(dedicated.c_str(), 0755), 0);
  ASSERT_EQ(chmod(dedicated.c_str(), 0755), 0);
  SlowService service;
  {
    auto server = Server::Start(dedicated + "/s.sock", &service);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    EXPECT_EQ(ModeOf(dedicated) & 07777, 0700u);
  }
  const std::string shared = dir_ + "/shared";
  ASSERT_EQ(mkdir(shared.c_str(), 0755), 0);
  ASSERT_EQ(chmod(shared.c_str(), 0755), 0);
  std::ofstream(shared + "/other-file") << "x";
  auto server = Server::Start(shared + "/s.sock", &service);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_EQ(ModeOf(shared) & 07777, 0755u);
}

TEST_F(ServerTest, RejectsBadPaths) {
  SlowService service;
  EXPECT_EQ(Server::Start("relative.sock", &service).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Server::Start("/" + std::string(200, 'x'), &service).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Server::Start(dir_ + "/missing/parent/s.sock", &service).status().code(),
            Code::kNotFound);
}

TEST_F(ServerTest, ShutdownLetsInFlightCallsFinish) {
  const std::string path = dir_ + "/thinsnap.sock";
  SlowService service;
  auto server = Server::Start(path, &service);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto stub = Connect(path);
  std::future<grpc::Status> call = std::async(std::launch::async, [&] {
    grpc::ClientContext context;
    v1::StatSnapshotRequest request;
    request.set_key("slow");
    v1::StatSnapshotResponse response;
    return stub->Stat(&context, request, &response);
  });
  service.started.get_future().wait();
  (*server)->Shutdown(std::chrono::seconds(10));
  EXPECT_TRUE(call.get().ok());
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace thinsnap
