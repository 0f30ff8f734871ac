#include "base/subprocess.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>

namespace thinsnap {
namespace {

using std::chrono::milliseconds;

TEST(SubprocessTest, CapturesStdoutStderrAndExitCode) {
  auto r = RunCommand({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
}

TEST(SubprocessTest, ArgumentsAreNotInterpretedByAShell) {
  auto r = RunCommand({"echo", "$HOME", "a;b", "`x`", "'q'"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out, "$HOME a;b `x` 'q'\n");
}

TEST(SubprocessTest, MissingProgramIsNotFound) {
  auto r = RunCommand({"thinsnap-no-such-program-xyz"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
}

TEST(SubprocessTest, EmptyArgvIsInvalidArgument) {
  auto r = RunCommand({});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST(SubprocessTest, LargeOutputOnBothStreamsDoesNotDeadlock) {
  // 4 MiB on each stream, far beyond a pipe buffer, interleaved by the child.
  auto r = RunCommand({"sh", "-c",
                       "head -c 4194304 /dev/zero; head -c 4194304 /dev/zero >&2; "
                       "head -c 1000 /dev/zero"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out.size(), 4194304u + 1000u);
  EXPECT_EQ(r->err.size(), 4194304u);
}

TEST(SubprocessTest, StdinDataReachesTheChild) {
  RunOptions opts;
  opts.stdin_data = std::string(1 << 20, 'x') + "end";
  auto r = RunCommand({"wc", "-c"}, opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(std::stoul(r->out), (1u << 20) + 3);
}

TEST(SubprocessTest, EmptyStdinIsImmediateEof) {
  auto r = RunCommand({"cat"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out, "");
}

TEST(SubprocessTest, ChildThatIgnoresStdinIsNotAnError) {
  // The child exits without reading; our writes hit EPIPE, which must neither
  // kill the test process (SIGPIPE) nor fail the call.
  RunOptions opts;
  opts.stdin_data = std::string(4 << 20, 'x');
  auto r = RunCommand({"true"}, opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0);
}

TEST(SubprocessTest, TimeoutKillsTheChildAndItsGrandchildren) {
  RunOptions opts;
  opts.timeout = milliseconds(200);
  auto start = std::chrono::steady_clock::now();
  // The shell forks sleep, which inherits the pipes: only a group kill ends it.
  auto r = RunCommand({"sh", "-c", "sleep 30; echo never"}, opts);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_LT(took, std::chrono::seconds(10));
}

TEST(SubprocessTest, TimeoutAppliesAfterTheChildClosesItsOutput) {
  RunOptions opts;
  opts.timeout = milliseconds(200);
  auto r = RunCommand({"sh", "-c", "exec >&- 2>&-; sleep 30"}, opts);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
}

TEST(SubprocessTest, FastCommandFinishesWithinTimeout) {
  RunOptions opts;
  opts.timeout = milliseconds(10000);
  auto r = RunCommand({"echo", "hi"}, opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->out, "hi\n");
}

TEST(SubprocessTest, SignalDeathIsReportedAs128PlusSignal) {
  auto r = RunCommand({"sh", "-c", "kill -9 $$"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 128 + 9);
}

TEST(SubprocessTest, ExtraEnvIsAddedAndOverridesInherited) {
  ASSERT_EQ(setenv("THINSNAP_SUBPROCESS_TEST", "parent", 1), 0);
  RunOptions opts;
  opts.extra_env = {"THINSNAP_SUBPROCESS_TEST=child", "THINSNAP_OTHER=1"};
  auto r = RunCommand({"sh", "-c", "echo $THINSNAP_SUBPROCESS_TEST-$THINSNAP_OTHER"}, opts);
  unsetenv("THINSNAP_SUBPROCESS_TEST");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->out, "child-1\n");
}

TEST(SubprocessTest, ParentFdsWithoutCloexecAreNotInherited) {
  int fd = open("/dev/null", O_RDONLY);  // deliberately no O_CLOEXEC
  ASSERT_GE(fd, 0);
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto r = RunCommand({"sh", "-c", "test -e " + path + " && echo leaked || echo closed"});
  close(fd);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->out, "closed\n");
}

TEST(SubprocessTest, RunCheckedReportsExitCodeAndStderrTail) {
  EXPECT_TRUE(RunChecked({"true"}).ok());
  Status s = RunChecked({"sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 7"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kInternal);
  EXPECT_NE(s.message().find("exited with 7"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("the reason"), std::string::npos) << s.message();
  EXPECT_EQ(RunChecked({"thinsnap-no-such-program-xyz"}).code(), Code::kNotFound);
}

}  // namespace
}  // namespace thinsnap
