// thinsnapd's serving stack over the fake pool, wired to Metrics the way
// src/daemon/main.cc wires it: the pool instrumented, the state watched, the
// reconciliation recorded and the RPC interceptor installed. Shared by the
// unit tests and by metrics_dump (which feeds the promtool and name checks).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "fake/fake_pool.h"
#include "metadata/store.h"
#include "metrics/metrics.h"
#include "rpc/server.h"
#include "rpc/snapshots_service.h"
#include "snapshot/snapshotter.h"

namespace thinsnap::testing {

struct MeteredStack {
  std::shared_ptr<FakePoolControl> pool_state;
  std::unique_ptr<ThinPool> watched_pool;  // what the scrape reads
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<Snapshotter> snapshotter;
  std::unique_ptr<SnapshotsService> service;
  std::unique_ptr<Server> server;

  ~MeteredStack() {
    if (server) server->Shutdown(std::chrono::milliseconds(0));
    if (metrics) metrics->Stop();
  }
};

inline Result<std::unique_ptr<MeteredStack>> StartMeteredStack(const std::string& dir,
                                                               const std::string& socket_path) {
  auto stack = std::make_unique<MeteredStack>();
  stack->pool_state = MakeFakePoolState();
  stack->watched_pool = MakeFakePool(stack->pool_state);
  stack->metrics = std::make_unique<Metrics>("test");
  auto store = Store::Open(dir + "/metadata.db");
  if (!store.ok()) return store.status();
  Store* raw_store = store->get();
  auto snapshotter = Snapshotter::Open(
      std::move(store).value(), stack->metrics->InstrumentPool(MakeFakePool(stack->pool_state)),
      MakeFakeFilesystem(), SnapshotterOptions{});
  if (!snapshotter.ok()) return snapshotter.status();
  stack->snapshotter = std::move(snapshotter).value();
  const auto& reconcile = stack->snapshotter->startup_reconcile();
  stack->metrics->RecordReconcile(reconcile.report, reconcile.seconds);
  stack->metrics->WatchState(stack->watched_pool.get(), raw_store);
  stack->service = std::make_unique<SnapshotsService>(stack->snapshotter.get());
  ServerOptions options;
  options.interceptors.push_back(stack->metrics->RpcInterceptorFactory());
  auto server = Server::Start(socket_path, stack->service.get(), std::move(options));
  if (!server.ok()) return server.status();
  stack->server = std::move(server).value();
  return stack;
}

// A loopback TCP port nothing listens on at the moment of the call.
inline int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// GET http://127.0.0.1:<port><path>; the whole response, headers included.
inline Result<std::string> HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    Status error = Status::FromErrno(errno, "connect 127.0.0.1:" + std::to_string(port));
    close(fd);
    return error;
  }
  const std::string request =
      "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    Status error = Status::FromErrno(errno, "write");
    close(fd);
    return error;
  }
  std::string response;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      Status error = Status::FromErrno(errno, "read");
      close(fd);
      return error;
    }
    if (n == 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

}  // namespace thinsnap::testing
