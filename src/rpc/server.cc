#include "rpc/server.h"

#include <dirent.h>
#include <grpcpp/support/server_interceptor.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace thinsnap {

namespace {

// True if `dir` has no entries other than `name`.
Result<bool> HoldsOnly(const std::string& dir, const std::string& name) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return Status::FromErrno(errno, "opendir " + dir);
  bool only = true;
  while (const dirent* entry = readdir(d)) {
    const std::string entry_name = entry->d_name;
    if (entry_name != "." && entry_name != ".." && entry_name != name) {
      only = false;
      break;
    }
  }
  closedir(d);
  return only;
}

Status PrepareDirectory(const std::string& dir, const std::string& socket_name) {
  if (mkdir(dir.c_str(), 0700) == 0) {
    // mkdir honours the umask; say exactly what we mean.
    if (chmod(dir.c_str(), 0700) != 0) return Status::FromErrno(errno, "chmod " + dir);
    return Status::Ok();
  }
  if (errno != EEXIST) return Status::FromErrno(errno, "mkdir " + dir);
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + dir);
  if (!S_ISDIR(st.st_mode)) return Status::FailedPrecondition(dir + " is not a directory");
  if ((st.st_mode & 07777) == 0700) return Status::Ok();
  // Tightening a shared directory (say /run) would lock others out of it.
  Result<bool> dedicated = HoldsOnly(dir, socket_name);
  if (!dedicated.ok()) return dedicated.status();
  if (st.st_uid != geteuid() || !*dedicated) {
    spdlog::warn("socket directory {} has mode {:o} and is not ours alone; leaving it as is", dir,
                 st.st_mode & 07777);
    return Status::Ok();
  }
  if (chmod(dir.c_str(), 0700) != 0) return Status::FromErrno(errno, "chmod " + dir);
  return Status::Ok();
}

// Removes a socket file left behind by a dead server. A live server keeps it.
Status RemoveStaleSocket(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno(errno, "lstat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Status::FailedPrecondition(path + " exists and is not a socket; not removing it");
  }
  // Non-blocking, so a live server with a full backlog answers EAGAIN
  // instead of hanging us; a dead one answers ECONNREFUSED.
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status::FromErrno(errno, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const bool live =
      connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 || errno == EAGAIN;
  close(fd);
  if (live) {
    return Status::FailedPrecondition("another server is listening on " + path);
  }
  spdlog::info("removing stale socket {}", path);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno(errno, "unlink " + path);
  }
  return Status::Ok();
}

// protobuf refuses a request whose proto3 string field holds invalid UTF-8
// (containerd's gogo protobuf never checks), and gRPC then answers INTERNAL
// with an empty message before any handler runs. INTERNAL is for our bugs;
// this is the client's, so say INVALID_ARGUMENT and why.
class UnparsableRequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  // `method` is "/package.Service/Method".
  explicit UnparsableRequestInterceptor(std::string_view method)
      : method_(method.substr(method.rfind('/') + 1)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    // The server deserializes before this hook and passes nullptr on failure.
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparsable_ = true;
    }
    if (unparsable_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::INTERNAL) {
      spdlog::debug("rpc {}: unparsable request", method_);
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          "request is not a valid " + method_ + " message (a string field holds invalid UTF-8?)"));
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  bool unparsable_ = false;
};

class UnparsableRequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new UnparsableRequestInterceptor(info->method() != nullptr ? info->method() : "");
  }
};

}  // namespace

Result<std::unique_ptr<Server>> Server::Start(const std::string& socket_path,
                                              grpc::Service* service, ServerOptions options) {
  if (socket_path.empty() || socket_path.front() != '/') {
    return Status::InvalidArgument("socket path must be absolute: \"" + socket_path + "\"");
  }
  if (socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::InvalidArgument("socket path too long: " + socket_path);
  }
  const size_t slash = socket_path.rfind('/');
  const std::string dir = slash == 0 ? "/" : socket_path.substr(0, slash);
  const std::string name = socket_path.substr(slash + 1);
  if (name.empty()) return Status::InvalidArgument("socket path names a directory: " + socket_path);

  THINSNAP_RETURN_IF_ERROR(PrepareDirectory(dir, name).Annotate("socket directory"));
  THINSNAP_RETURN_IF_ERROR(RemoveStaleSocket(socket_path));

  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<UnparsableRequestInterceptorFactory>());
  for (auto& extra : options.interceptors) interceptors.push_back(std::move(extra));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    return Status::Internal("failed to bind gRPC server to unix:" + socket_path);
  }
  struct stat st;
  if (chmod(socket_path.c_str(), 0660) != 0 || lstat(socket_path.c_str(), &st) != 0) {
    Status error = Status::FromErrno(errno, "chmod/lstat " + socket_path);
    server->Shutdown(std::chrono::system_clock::now());
    server->Wait();
    return error;
  }
  spdlog::info("serving on unix:{}", socket_path);
  return std::unique_ptr<Server>(new Server(socket_path, std::move(server), st.st_dev, st.st_ino));
}

Server::Server(std::string socket_path, std::unique_ptr<grpc::Server> server, dev_t dev, ino_t ino)
    : socket_path_(std::move(socket_path)),
      server_(std::move(server)),
      socket_dev_(dev),
      socket_ino_(ino) {}

Server::~Server() { Shutdown(std::chrono::milliseconds(0)); }

void Server::Shutdown(std::chrono::milliseconds grace) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) return;
  shut_down_ = true;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  struct stat st;
  if (lstat(socket_path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ &&
      st.st_ino == socket_ino_) {
    unlink(socket_path_.c_str());
  }
  spdlog::info("stopped serving on unix:{}", socket_path_);
}

}  // namespace thinsnap
