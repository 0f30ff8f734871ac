#include "daemon/readiness.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace thinsnap {
namespace {

// Plays systemd: a datagram socket at $NOTIFY_SOCKET that receives what
// sd_notify sends.
class ReadinessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/thinsnap-notify-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/notify.sock";
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd_, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << strerror(errno);
    timeval timeout{5, 0};
    ASSERT_EQ(setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
    ASSERT_EQ(setenv("NOTIFY_SOCKET", path_.c_str(), 1), 0);
  }
  void TearDown() override {
    unsetenv("NOTIFY_SOCKET");
    if (fd_ >= 0) close(fd_);
    std::filesystem::remove_all(dir_);
  }

  std::string Receive() {
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) return "recv failed: " + std::string(strerror(errno));
    return std::string(buf, static_cast<size_t>(n));
  }

  std::string dir_, path_;
  int fd_ = -1;
};

TEST_F(ReadinessTest, ReadySendsReadyAndTheSocket) {
  ASSERT_TRUE(NotifyReady("/run/thinsnap/thinsnap.sock").ok());
  EXPECT_EQ(Receive(), "READY=1\nSTATUS=serving on unix:/run/thinsnap/thinsnap.sock");
}

TEST_F(ReadinessTest, StoppingSendsStopping) {
  ASSERT_TRUE(NotifyStopping().ok());
  EXPECT_EQ(Receive(), "STOPPING=1\nSTATUS=shutting down");
}

TEST_F(ReadinessTest, WithoutNotifySocketNothingIsSent) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_TRUE(NotifyReady("/run/x.sock").ok());
  char byte;
  EXPECT_EQ(recv(fd_, &byte, 1, MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, EAGAIN);
}

TEST_F(ReadinessTest, UnreachableNotifySocketIsAnError) {
  ASSERT_EQ(setenv("NOTIFY_SOCKET", (dir_ + "/absent.sock").c_str(), 1), 0);
  Status status = NotifyReady("/run/x.sock");
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("sd_notify"), std::string::npos) << status.ToString();
}

}  // namespace
}  // namespace thinsnap
