// Hostile bytes on the server's unix socket: garbage, truncated HTTP/2
// prefaces and frames, an oversized frame header, malformed HPACK, and
// clients that connect and stall. While they run, a well-behaved client on
// the same socket keeps making calls, and every one of them must succeed
// within its deadline. The server must close the garbage connections itself
// and keep serving afterwards.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
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
using namespace std::chrono_literals;

const std::string kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// HTTP/2 frame header (RFC 9113 4.1): 24-bit length, type, flags, stream id.
std::string FrameHeader(uint32_t length, uint8_t type, uint8_t flags, uint32_t stream) {
  std::string h;
  h.push_back(static_cast<char>(length >> 16));
  h.push_back(static_cast<char>(length >> 8));
  h.push_back(static_cast<char>(length));
  h.push_back(static_cast<char>(type));
  h.push_back(static_cast<char>(flags));
  for (int shift = 24; shift >= 0; shift -= 8) h.push_back(static_cast<char>(stream >> shift));
  return h;
}
constexpr uint8_t kData = 0x0, kHeaders = 0x1, kSettings = 0x4, kWindowUpdate = 0x8,
                  kContinuation = 0x9;
constexpr uint8_t kEndHeaders = 0x4;

// A raw connection to the socket, closed on destruction.
class RawConn {
 public:
  explicit RawConn(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0) << strerror(errno);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    EXPECT_TRUE(connected_) << strerror(errno);
  }
  ~RawConn() {
    if (fd_ >= 0) close(fd_);
  }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  // Writes everything unless the peer has gone; returns false then.
  bool Send(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads (and discards) until the server closes the connection; false if it
  // is still open after `limit`.
  bool ClosedByPeerWithin(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    char buf[4096];
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      int ready = poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n == 0) return true;
      if (n < 0) return errno != EINTR && errno != EAGAIN;
    }
  }

  bool connected() const { return connected_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Calls the server in a loop on its own connection and records every result.
class GoodClient {
 public:
  explicit GoodClient(const std::string& socket_path)
      : stub_(v1::Snapshots::NewStub(
            grpc::CreateChannel("unix:" + socket_path, grpc::InsecureChannelCredentials()))) {}

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_ = true;
    thread_.join();
  }
  // Waits until at least `n` more rounds have completed (each one is a
  // Prepare, Stat, List and Remove), so abuse and calls overlap.
  bool WaitRounds(int n) {
    const int target = rounds_ + n;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (rounds_ < target) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  int rounds() const { return rounds_; }
  std::vector<std::string> failures() {
    std::lock_guard lock(mu_);
    return failures_;
  }

 private:
  template <typename Call>
  void Check(const char* what, Call&& call) {
    grpc::ClientContext context;
    // Calls on the fake pool take milliseconds; abuse must not stretch them.
    context.set_deadline(std::chrono::system_clock::now() + 5s);
    grpc::Status status = call(&context);
    if (!status.ok()) {
      std::lock_guard lock(mu_);
      failures_.push_back(std::string(what) + ": " + std::to_string(status.error_code()) + " " +
                          status.error_message());
    }
  }

  void Loop() {
    for (int i = 0; !stop_; ++i) {
      const std::string key = "good/" + std::to_string(i);
      Check("Prepare", [&](grpc::ClientContext* c) {
        v1::PrepareSnapshotRequest request;
        request.set_key(key);
        v1::PrepareSnapshotResponse response;
        return stub_->Prepare(c, request, &response);
      });
      Check("Stat", [&](grpc::ClientContext* c) {
        v1::StatSnapshotRequest request;
        request.set_key(key);
        v1::StatSnapshotResponse response;
        return stub_->Stat(c, request, &response);
      });
      Check("List", [&](grpc::ClientContext* c) {
        v1::ListSnapshotsRequest request;
        auto reader = stub_->List(c, request);
        v1::ListSnapshotsResponse response;
        while (reader->Read(&response)) {
        }
        return reader->Finish();
      });
      Check("Remove", [&](grpc::ClientContext* c) {
        v1::RemoveSnapshotRequest request;
        request.set_key(key);
        google::protobuf::Empty response;
        return stub_->Remove(c, request, &response);
      });
      ++rounds_;
    }
  }

  std::unique_ptr<v1::Snapshots::Stub> stub_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> rounds_{0};
  std::mutex mu_;
  std::vector<std::string> failures_;
};

class RpcWireAbuseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thinsnap-wire-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_path_ = dir_ + "/thinsnap.sock";
    auto stack = testing::StartServingStack(dir_, socket_path_);
    ASSERT_TRUE(stack.ok()) << stack.status().ToString();
    pool_ = stack->pool;
    snapshotter_ = std::move(stack->snapshotter);
    service_ = std::move(stack->service);
    server_ = std::move(stack->server);
    good_ = std::make_unique<GoodClient>(socket_path_);
    good_->Start();
    ASSERT_TRUE(good_->WaitRounds(3)) << "the good client never got going";
  }

  void TearDown() override {
    if (good_) {
      // The good client is still served after the abuse...
      EXPECT_TRUE(good_->WaitRounds(3)) << "the good client stalled";
      good_->Stop();
      // ...and never saw an error.
      for (const std::string& failure : good_->failures()) ADD_FAILURE() << failure;
      EXPECT_GT(good_->rounds(), 6);
    }
    good_.reset();
    // Nothing the abusers sent created or removed anything.
    ASSERT_TRUE(snapshotter_->Cleanup().ok());
    EXPECT_EQ(pool_->ThinIds().size(), 1u) << "only the base device should remain";
    if (server_) server_->Shutdown(0ms);
    server_.reset();
    service_.reset();
    snapshotter_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Sends `bytes` on a fresh connection and expects the server to hang up.
  void ExpectHangUp(const std::string& what, const std::string& bytes) {
    RawConn conn(socket_path_);
    ASSERT_TRUE(conn.connected());
    conn.Send(bytes);  // the server may close before reading it all
    EXPECT_TRUE(conn.ClosedByPeerWithin(10s)) << what << ": server kept the connection open";
  }

  std::string dir_;
  std::string socket_path_;
  std::shared_ptr<testing::FakePoolControl> pool_;
  std::unique_ptr<Snapshotter> snapshotter_;
  std::unique_ptr<SnapshotsService> service_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<GoodClient> good_;
};

TEST_F(RpcWireAbuseTest, GarbageBytes) {
  std::mt19937 rng(42);
  for (int i = 0; i < 40; ++i) {
    std::string garbage(1 + rng() % 65536, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    ExpectHangUp("garbage #" + std::to_string(i), garbage);
  }
  ExpectHangUp("HTTP/1.1 request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  ExpectHangUp("TLS ClientHello", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
  ExpectHangUp("preface then garbage", kPreface + std::string(4096, '\xff'));
  EXPECT_TRUE(good_->WaitRounds(3));
}

TEST_F(RpcWireAbuseTest, TruncatedPrefaceAndFrames) {
  // Each is cut short (or ignorable) and the client hangs up: the server must just drop it.
  const std::string settings = FrameHeader(0, kSettings, 0, 0);
  const std::vector<std::string> truncated = {
      kPreface.substr(0, 1),
      kPreface.substr(0, 10),
      kPreface.substr(0, kPreface.size() - 1),
      kPreface + settings.substr(0, 5),
      kPreface + FrameHeader(6, kSettings, 0, 0) + std::string("\x00\x03", 2),
      kPreface + settings + FrameHeader(100, kHeaders, kEndHeaders, 1) + std::string(10, 'h'),
      kPreface + settings + FrameHeader(4, kWindowUpdate, 0, 0) + std::string("\x00", 1),
      // Complete but meaningless: gRPC skips DATA for a stream that does not exist (RFC 9113
      // would allow a connection error) and keeps the connection; it must still not hurt.
      kPreface + settings + FrameHeader(4, kData, 0, 0) + "abcd",
      kPreface + settings + FrameHeader(4, kData, 0, 7) + "abcd",
  };
  for (const std::string& bytes : truncated) {
    for (int i = 0; i < 5; ++i) {
      RawConn conn(socket_path_);
      ASSERT_TRUE(conn.connected());
      conn.Send(bytes);
    }
  }
  EXPECT_TRUE(good_->WaitRounds(3));
}

TEST_F(RpcWireAbuseTest, MalformedFramesAreRefused) {
  const std::string settings = FrameHeader(0, kSettings, 0, 0);
  // 16 MiB - 1, far above the 16 KiB SETTINGS_MAX_FRAME_SIZE the server allows.
  ExpectHangUp("oversized DATA frame header",
               kPreface + settings + FrameHeader(0xffffff, kData, 0, 1) + std::string(1024, 'd'));
  ExpectHangUp("oversized HEADERS frame header",
               kPreface + settings + FrameHeader(0xffffff, kHeaders, 0, 1));
  ExpectHangUp("oversized SETTINGS frame",
               kPreface + FrameHeader(0xffffff, kSettings, 0, 0) + std::string(1024, '\0'));
  ExpectHangUp("SETTINGS with a length not a multiple of 6",
               kPreface + FrameHeader(5, kSettings, 0, 0) + std::string(5, '\0'));
  ExpectHangUp(
      "HEADERS with garbage HPACK",
      kPreface + settings + FrameHeader(16, kHeaders, kEndHeaders, 1) + std::string(16, '\xff'));
  ExpectHangUp("CONTINUATION without HEADERS",
               kPreface + settings + FrameHeader(4, kContinuation, kEndHeaders, 1) + "abcd");
  ExpectHangUp("WINDOW_UPDATE of zero", kPreface + settings + FrameHeader(4, kWindowUpdate, 0, 0) +
                                            std::string("\x00\x00\x00\x00", 4));
  ExpectHangUp("wrong preface", "PRI * HTTP/3.0\r\n\r\nSM\r\n\r\n" + settings);
  EXPECT_TRUE(good_->WaitRounds(3));
}

TEST_F(RpcWireAbuseTest, StalledClientsDoNotBlockOthers) {
  // Connections that never finish their preface or frames hold no lock the
  // good client needs.
  std::vector<std::unique_ptr<RawConn>> stalled;
  const std::vector<std::string> openings = {
      "",
      kPreface.substr(0, 7),
      kPreface,
      kPreface + FrameHeader(0, kSettings, 0, 0),
      kPreface + FrameHeader(0, kSettings, 0, 0) + FrameHeader(200, kHeaders, kEndHeaders, 1) +
          std::string(20, '\x82'),
      kPreface + FrameHeader(0, kSettings, 0, 0) + FrameHeader(1 << 14, kData, 0, 1) + "partial",
  };
  for (int i = 0; i < 8; ++i) {
    for (const std::string& opening : openings) {
      stalled.push_back(std::make_unique<RawConn>(socket_path_));
      ASSERT_TRUE(stalled.back()->connected());
      stalled.back()->Send(opening);
    }
  }
  // A slow writer: the preface one byte at a time.
  RawConn slow(socket_path_);
  ASSERT_TRUE(slow.connected());
  for (char c : kPreface) {
    slow.Send(std::string(1, c));
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(good_->WaitRounds(10)) << "good client blocked by stalled connections";

  // A fresh well-behaved connection still works while they are all open.
  auto stub = v1::Snapshots::NewStub(
      grpc::CreateChannel("unix:" + socket_path_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 5s);
  v1::StatSnapshotRequest request;
  request.set_key("missing");
  v1::StatSnapshotResponse response;
  EXPECT_EQ(stub->Stat(&context, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(RpcWireAbuseTest, ManyAbusersAtOnce) {
  std::vector<std::thread> abusers;
  std::atomic<int> connections{0};
  for (int t = 0; t < 4; ++t) {
    abusers.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 50; ++i) {
        RawConn conn(socket_path_);
        std::string bytes = (i % 2) ? kPreface : "";
        bytes += std::string(rng() % 2048, static_cast<char>(rng()));
        conn.Send(bytes);
        ++connections;
      }
    });
  }
  for (std::thread& t : abusers) t.join();
  EXPECT_EQ(connections, 200);
  EXPECT_TRUE(good_->WaitRounds(5));
}

}  // namespace
}  // namespace thinsnap
