// Server: serves one gRPC service on a unix socket, the way containerd's
// proxy plugins expect to reach it (`address = "/run/thinsnap/thinsnap.sock"`).
//
// Start prepares the socket's directory (created 0700 if missing; made 0700 if
// we own it and it holds nothing but our socket), removes a stale socket left
// by a crashed daemon (refusing if the path is not a socket or if a live
// server still answers on it), binds `unix:<path>` and makes the socket 0660.
// Access control rests on the directory: the socket exists with umask bits for
// an instant before the chmod.
//
// A request that does not parse (e.g. invalid UTF-8 in a proto3 string field,
// which containerd's Go client does not check) gets INVALID_ARGUMENT naming
// the method instead of gRPC's bare INTERNAL; no handler runs for it.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"

namespace thinsnap {

struct ServerOptions {
  // Requests are small (keys and label pairs are at most 4 KiB each); the
  // largest is an Update or Prepare carrying many labels. 4 MiB also matches
  // the client-side default of containerd's gRPC connection.
  int max_receive_message_bytes = 4 << 20;
  // Observers of every call (e.g. Metrics::RpcInterceptorFactory). They run
  // after the server's own interceptor, so they see the status the client
  // gets.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
};

class Server {
 public:
  // `service` is not owned and must outlive the Server.
  static Result<std::unique_ptr<Server>> Start(const std::string& socket_path,
                                               grpc::Service* service, ServerOptions options = {});
  // Shuts down with no grace period if Shutdown was not called.
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Stops accepting calls; in-flight calls get `grace` to finish and are then
  // cancelled. Returns once every handler has returned, after removing the
  // socket file (if it is still ours). Idempotent.
  void Shutdown(std::chrono::milliseconds grace);

  const std::string& socket_path() const { return socket_path_; }

 private:
  Server(std::string socket_path, std::unique_ptr<grpc::Server> server, dev_t dev, ino_t ino);

  const std::string socket_path_;
  std::unique_ptr<grpc::Server> server_;
  // Identity of the socket we bound, so Shutdown never unlinks a successor's.
  const dev_t socket_dev_;
  const ino_t socket_ino_;
  std::mutex mu_;
  bool shut_down_ = false;  // guarded by mu_
};

}  // namespace thinsnap
