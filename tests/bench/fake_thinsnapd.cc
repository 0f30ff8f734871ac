// fake_thinsnapd: thinsnapd's serving stack (SQLite store, Snapshotter, gRPC
// server) over the in-memory fake pool and filesystem, on a unix socket, so
// that containerd's proxy client can be benchmarked without device-mapper: on
// the host (tests/bench/list-on-host.sh), and in the VM beside the real pool,
// as the daemon's and the client's own share (run-in-vm.sh). Never shipped.
//
//   fake_thinsnapd DIR    # metadata in DIR, socket DIR/thinsnapd.sock
//
// Serves until SIGTERM or SIGINT; prints "ready" on stdout once serving.
#include <signal.h>

#include <cstdio>
#include <string>

#include "unit/serving_stack.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  // Blocked before any thread starts, so that sigwait below takes them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  const std::string dir = argv[1];
  auto stack = thinsnap::testing::StartServingStack(dir, dir + "/thinsnapd.sock");
  if (!stack.ok()) {
    std::fprintf(stderr, "fake_thinsnapd: %s\n", stack.status().ToString().c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  return 0;
}
