// Metrics: the series the daemon's wiring produces (metered_stack.h), read
// back from the exposition and from a real HTTP scrape.
#include "metrics/metrics.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "daemon/root_dir.h"
#include "fake/fake_pool.h"
#include "metrics/metered_stack.h"

namespace thinsnap {
namespace {

namespace v1 = containerd::services::snapshots::v1;
using testing::FreeLoopbackPort;
using testing::HttpGet;
using testing::MakeFakePool;
using testing::MeteredStack;
using testing::StartMeteredStack;

// The value of the sample written exactly as `series` (name plus labels in
// prometheus-cpp's sorted order), or -1 if there is none.
double Sample(const std::string& exposition, const std::string& series) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thinsnap-metrics-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto stack = StartMeteredStack(dir_, dir_ + "/s.sock");
    ASSERT_TRUE(stack.ok()) << stack.status().ToString();
    stack_ = std::move(*stack);
    stub_ = v1::Snapshots::NewStub(
        grpc::CreateChannel("unix:" + dir_ + "/s.sock", grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    stack_.reset();
    std::filesystem::remove_all(dir_);
  }

  grpc::StatusCode Prepare(const std::string& key) {
    grpc::ClientContext context;
    v1::PrepareSnapshotRequest request;
    request.set_key(key);
    v1::PrepareSnapshotResponse response;
    return stub_->Prepare(&context, request, &response).error_code();
  }

  std::string dir_;
  std::unique_ptr<MeteredStack> stack_;
  std::unique_ptr<v1::Snapshots::Stub> stub_;
};

TEST_F(MetricsTest, CountsRequestsByMethodAndCodeWithLatency) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Prepare("k" + std::to_string(i)), grpc::StatusCode::OK);
  ASSERT_EQ(Prepare("k0"), grpc::StatusCode::ALREADY_EXISTS);
  ASSERT_EQ(Prepare(""), grpc::StatusCode::INVALID_ARGUMENT);
  const std::string text = stack_->metrics->Exposition();
  EXPECT_EQ(Sample(text, R"(thinsnap_grpc_requests_total{code="OK",method="Prepare"})"), 3);
  EXPECT_EQ(Sample(text, R"(thinsnap_grpc_requests_total{code="ALREADY_EXISTS",method="Prepare"})"),
            1);
  EXPECT_EQ(
      Sample(text, R"(thinsnap_grpc_requests_total{code="INVALID_ARGUMENT",method="Prepare"})"), 1);
  EXPECT_EQ(Sample(text, R"(thinsnap_grpc_request_duration_seconds_count{method="Prepare"})"), 5);
  // Buckets run from 1 ms to 10 s.
  EXPECT_EQ(
      Sample(text, R"(thinsnap_grpc_request_duration_seconds_bucket{method="Prepare",le="10"})"),
      Sample(text, R"(thinsnap_grpc_request_duration_seconds_bucket{method="Prepare",le="+Inf"})"));
  EXPECT_GE(
      Sample(text, R"(thinsnap_grpc_request_duration_seconds_bucket{method="Prepare",le="0.001"})"),
      0);
}

TEST_F(MetricsTest, UnparsableRequestIsCountedWithTheCodeTheClientGets) {
  // A string field holding invalid UTF-8 (see rpc/server.h): the server's own
  // interceptor turns gRPC's INTERNAL into INVALID_ARGUMENT before ours sees it.
  grpc::ClientContext context;
  v1::PrepareSnapshotRequest request;
  request.set_key("\xff\xfe");
  v1::PrepareSnapshotResponse response;
  ASSERT_EQ(stub_->Prepare(&context, request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  const std::string text = stack_->metrics->Exposition();
  EXPECT_EQ(
      Sample(text, R"(thinsnap_grpc_requests_total{code="INVALID_ARGUMENT",method="Prepare"})"), 1);
  EXPECT_EQ(Sample(text, R"(thinsnap_grpc_requests_total{code="INTERNAL",method="Prepare"})"), -1);
}

TEST_F(MetricsTest, ReadsPoolAndStoreStateAtScrapeTime) {
  ASSERT_EQ(Prepare("a"), grpc::StatusCode::OK);
  ASSERT_EQ(Prepare("b"), grpc::StatusCode::OK);
  stack_->pool_state->SetDataUsage(25, 100);
  stack_->pool_state->SetNeedsCheck(true);
  const std::string text = stack_->metrics->Exposition();
  const double used = Sample(text, R"(thinsnap_pool_data_used_bytes{pool="fake"})");
  const double size = Sample(text, R"(thinsnap_pool_data_size_bytes{pool="fake"})");
  ASSERT_GT(size, 0);
  EXPECT_DOUBLE_EQ(used / size, 0.25);
  EXPECT_EQ(Sample(text, R"(thinsnap_pool_needs_check{pool="fake"})"), 1);
  EXPECT_EQ(Sample(text, R"(thinsnap_pool_read_only{pool="fake"})"), 0);
  EXPECT_EQ(Sample(text, R"(thinsnap_pool_status_up{pool="fake"})"), 1);
  EXPECT_EQ(Sample(text, R"(thinsnap_snapshots{kind="active"})"), 2);
  EXPECT_EQ(Sample(text, R"(thinsnap_snapshots{kind="committed"})"), 0);
  EXPECT_EQ(Sample(text, "thinsnap_thin_ids_in_use"), 3);  // two snapshots and the base
  EXPECT_EQ(Sample(text, "thinsnap_pending_delete_intents"), 0);
  EXPECT_EQ(Sample(text, R"(thinsnap_build_info{version="test"})"), 1);
  EXPECT_EQ(Sample(text, R"(thinsnap_reconcile_repairs_total{kind="orphan_thin_id"})"), 0);
  EXPECT_GE(Sample(text, "thinsnap_reconcile_duration_seconds"), 0);
}

TEST_F(MetricsTest, ServesTheExpositionOverHttpExactlyWhereConfigured) {
  const int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  ASSERT_TRUE(stack_->metrics->Serve("127.0.0.1:" + std::to_string(port)).ok());
  Result<std::string> response = HttpGet(port, "/metrics");
  ASSERT_TRUE(response.ok()) << response.status().ToString();
  EXPECT_EQ(response->rfind("HTTP/1.1 200", 0), 0u) << response->substr(0, 100);
  EXPECT_NE(response->find("\nthinsnap_build_info{version=\"test\"} 1"), std::string::npos);
  // A second endpoint on the same address cannot bind, and says so.
  Metrics other("test");
  Status taken = other.Serve("127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(taken.code(), Code::kUnavailable) << taken.ToString();
  stack_->metrics->Stop();
  EXPECT_FALSE(HttpGet(port, "/metrics").ok());
}

TEST(MetricsPoolTest, TimesEveryOperationAndCountsFailures) {
  Metrics metrics("test");
  std::unique_ptr<ThinPool> pool = metrics.InstrumentPool(MakeFakePool());
  ASSERT_TRUE(pool->CreateThin(5).ok());
  EXPECT_EQ(pool->CreateThin(5).code(), Code::kAlreadyExists);
  EXPECT_EQ(pool->Delete(9).code(), Code::kNotFound);
  ASSERT_TRUE(pool->QueryStatus().ok());
  const std::string text = metrics.Exposition();
  EXPECT_EQ(
      Sample(text, R"(thinsnap_dm_operation_duration_seconds_count{operation="create_thin"})"), 2);
  EXPECT_EQ(Sample(text, R"(thinsnap_dm_operation_errors_total{operation="create_thin"})"), 1);
  EXPECT_EQ(Sample(text, R"(thinsnap_dm_operation_errors_total{operation="delete"})"), 1);
  EXPECT_EQ(Sample(text, R"(thinsnap_dm_operation_duration_seconds_count{operation="status"})"), 1);
  EXPECT_EQ(Sample(text, R"(thinsnap_dm_operation_errors_total{operation="status"})"), 0);
}

TEST(MetricsAddressTest, AcceptsNumericAddressesOnly) {
  for (const char* good : {"", "127.0.0.1:9500", "0.0.0.0:1", "[::1]:9500", "[::]:65535"}) {
    EXPECT_TRUE(ValidateMetricsAddress(good).ok()) << good;
  }
  for (const char* bad :
       {"9500", ":9500", "localhost:9500", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:95x", "[::1]9500", "::1:9500", "unix:/run/thinsnap/metrics.sock"}) {
    Status status = ValidateMetricsAddress(bad);
    EXPECT_EQ(status.code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_NE(ValidateMetricsAddress("unix:/x").message().find("unix sockets are not supported"),
            std::string::npos);
}

TEST(RootDirClaimTest, AbandonRemovesOnlyWhatThisStartCreated) {
  char tmpl[] = "/tmp/thinsnap-claim-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string base = tmpl;
  {
    // A fresh root_dir (and its missing parent) goes away entirely.
    auto claim = RootDirClaim::Claim(base + "/new/root");
    ASSERT_TRUE(claim.ok()) << claim.status().ToString();
    (*claim)->NoteCreated(base + "/new/root/metadata.db");
    std::ofstream(base + "/new/root/metadata.db") << "x";
    (*claim)->Abandon();
    EXPECT_FALSE(std::filesystem::exists(base + "/new"));
  }
  {
    // An existing root_dir keeps what it held before.
    std::filesystem::create_directories(base + "/old");
    std::ofstream(base + "/old/metadata.db") << "kept";
    auto claim = RootDirClaim::Claim(base + "/old");
    ASSERT_TRUE(claim.ok()) << claim.status().ToString();
    (*claim)->NoteCreated(base + "/old/metadata.db");
    // A second daemon is refused and removes nothing.
    auto second = RootDirClaim::Claim(base + "/old");
    EXPECT_EQ(second.status().code(), Code::kFailedPrecondition);
    EXPECT_TRUE(std::filesystem::exists(base + "/old/thinsnapd.lock"));
    (*claim)->Abandon();
    EXPECT_TRUE(std::filesystem::exists(base + "/old/metadata.db"));
    EXPECT_FALSE(std::filesystem::exists(base + "/old/thinsnapd.lock"));
  }
  {
    // A successful start keeps everything.
    auto claim = RootDirClaim::Claim(base + "/kept");
    ASSERT_TRUE(claim.ok());
    (*claim)->Keep();
    (*claim)->Abandon();
    EXPECT_TRUE(std::filesystem::exists(base + "/kept/thinsnapd.lock"));
  }
  std::filesystem::remove_all(base);
}

}  // namespace
}  // namespace thinsnap
