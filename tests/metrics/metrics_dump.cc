// metrics_dump: prints a real /metrics scrape of thinsnapd's serving stack
// over the fake pool, after one call of every kind that creates series.
//
// It is what the fast checks compare against (tests/metrics/check.sh):
// `promtool check metrics` lints it, and every series the alert rules and
// the Grafana dashboard name must appear in it. The stack is the daemon's
// own wiring (metered_stack.h); only the pool is the in-memory fake.
#include <grpcpp/grpcpp.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "metrics/metered_stack.h"

namespace v1 = containerd::services::snapshots::v1;
using namespace thinsnap;
using namespace thinsnap::testing;

namespace {

int Die(const std::string& what) {
  std::fprintf(stderr, "metrics_dump: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main() {
  // stdout carries the scrape alone.
  spdlog::set_default_logger(spdlog::stderr_color_mt("metrics_dump"));
  char tmpl[] = "/tmp/thinsnap-metrics-dump-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Die("mkdtemp failed");
  const std::string dir = tmpl;
  int code = 0;
  {
    auto stack = StartMeteredStack(dir, dir + "/s.sock");
    if (!stack.ok()) return Die(stack.status().ToString());
    auto stub = v1::Snapshots::NewStub(
        grpc::CreateChannel("unix:" + dir + "/s.sock", grpc::InsecureChannelCredentials()));
    const auto call = [&](auto method, const auto& request, auto response) {
      grpc::ClientContext context;
      return ((*stub).*method)(&context, request, &response).error_code();
    };
    v1::PrepareSnapshotRequest prepare;
    prepare.set_key("active");
    v1::CommitSnapshotRequest commit;
    commit.set_key("active");
    commit.set_name("layer");
    v1::StatSnapshotRequest stat;
    stat.set_key("missing");
    v1::RemoveSnapshotRequest remove;
    remove.set_key("layer");
    if (call(&v1::Snapshots::Stub::Prepare, prepare, v1::PrepareSnapshotResponse()) !=
            grpc::StatusCode::OK ||
        call(&v1::Snapshots::Stub::Commit, commit, google::protobuf::Empty()) !=
            grpc::StatusCode::OK ||
        call(&v1::Snapshots::Stub::Stat, stat, v1::StatSnapshotResponse()) !=
            grpc::StatusCode::NOT_FOUND ||
        call(&v1::Snapshots::Stub::Remove, remove, google::protobuf::Empty()) !=
            grpc::StatusCode::OK) {
      return Die("a call did not answer as expected");
    }
    const int port = FreeLoopbackPort();
    const std::string address = "127.0.0.1:" + std::to_string(port);
    if (Status serving = (*stack)->metrics->Serve(address); !serving.ok()) {
      return Die(serving.ToString());
    }
    Result<std::string> response = HttpGet(port, "/metrics");
    if (!response.ok()) return Die(response.status().ToString());
    const size_t body = response->find("\r\n\r\n");
    if (response->rfind("HTTP/1.1 200", 0) != 0 || body == std::string::npos) {
      code = Die("unexpected response: " + response->substr(0, 200));
    } else {
      std::fwrite(response->data() + body + 4, 1, response->size() - body - 4, stdout);
    }
  }
  std::filesystem::remove_all(dir);
  return code;
}
