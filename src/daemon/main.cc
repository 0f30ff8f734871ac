// thinsnapd: serves containerd's snapshots API over a device-mapper thin pool.
//
// Startup opens, in order, the metadata store, the pool, the filesystem and
// the Snapshotter (which reconciles the pool with the store), then binds the
// socket and only then tells systemd it is ready (readiness.h). SIGTERM/SIGINT
// stop accepting calls, let in-flight ones finish, and close the Snapshotter
// and the database before exiting 0. Any startup failure prints one clear line
// and exits 1.
#include <fcntl.h>
#include <google/protobuf/stubs/logging.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "daemon/config.h"
#include "daemon/readiness.h"
#include "dm_pool.h"
#include "filesystem.h"
#include "rpc/server.h"
#include "rpc/snapshots_service.h"
#include "snapshotter.h"
#include "store.h"

namespace thinsnap {
namespace {

// In-flight calls get this long to finish at shutdown.
constexpr std::chrono::seconds kShutdownGrace(30);

// protobuf's complaints in a server are about the bytes a client sent (e.g.
// invalid UTF-8 in a string field); the client already gets INVALID_ARGUMENT
// for them, so they belong with our other client-error lines at debug level
// rather than as unformatted ERROR lines on stderr.
void LogProtobuf(google::protobuf::LogLevel level, const char* filename, int line,
                 const std::string& message) {
  spdlog::log(
      level == google::protobuf::LOGLEVEL_FATAL ? spdlog::level::critical : spdlog::level::debug,
      "protobuf {}:{}: {}", filename, line, message);
}

int Fail(const Status& status) {
  std::fprintf(stderr, "thinsnapd: %s\n", status.ToString().c_str());
  return 1;
}

// Creates `dir` (0700) and its parents if missing; an existing directory is
// left as the administrator made it.
Status MakeRootDir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return Status::Ok();
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::FromErrno(ec.value(), "create root_dir " + dir);
  if (chmod(dir.c_str(), 0700) != 0) return Status::FromErrno(errno, "chmod " + dir);
  return Status::Ok();
}

// One daemon per root_dir: a second one would reconcile the same pool and
// database behind the first one's back. The lock lives as long as the fd,
// i.e. the process.
Result<int> LockRootDir(const std::string& dir) {
  const std::string path = dir + "/thinsnapd.lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    Status error = errno == EWOULDBLOCK
                       ? Status::FailedPrecondition("another thinsnapd holds " + path)
                       : Status::FromErrno(errno, "flock " + path);
    close(fd);
    return error;
  }
  return fd;
}

int Run(int argc, char** argv) {
  CLI::App app{"thinsnapd: containerd proxy snapshotter over device-mapper thin pools",
               "thinsnapd"};
  app.set_version_flag("--version", std::string("thinsnapd ") + THINSNAP_VERSION);
  std::string config_path, root_dir, socket, pool_name, log_level;
  app.add_option("--config", config_path, "TOML configuration file");
  app.add_option("--root", root_dir, "metadata directory (overrides root_dir)");
  app.add_option("--socket", socket, "unix socket to serve on (overrides socket)");
  app.add_option("--pool", pool_name, "device-mapper thin-pool name (overrides pool_name)");
  app.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error, critical or off (overrides log_level)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }

  Config config;
  if (!config_path.empty()) {
    Result<Config> loaded = LoadConfig(config_path);
    if (!loaded.ok()) return Fail(loaded.status());
    config = std::move(*loaded);
  }
  if (app.count("--root") > 0) config.root_dir = root_dir;
  if (app.count("--socket") > 0) config.socket = socket;
  if (app.count("--pool") > 0) config.pool_name = pool_name;
  if (app.count("--log-level") > 0) config.log_level = log_level;
  if (Status valid = ValidateConfig(config); !valid.ok()) return Fail(valid);

  // Signals are taken synchronously by sigwait below; block them before any
  // thread (spdlog, gRPC) exists so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto logger = spdlog::stderr_color_mt("thinsnapd");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  google::protobuf::SetLogHandler(&LogProtobuf);
  spdlog::info("thinsnapd {} starting: root_dir={} socket={} pool={}", THINSNAP_VERSION,
               config.root_dir, config.socket, config.pool_name);

  if (Status made = MakeRootDir(config.root_dir); !made.ok()) return Fail(made);
  Result<int> lock_fd = LockRootDir(config.root_dir);
  if (!lock_fd.ok()) return Fail(lock_fd.status());

  Result<std::unique_ptr<Store>> store = Store::Open(config.root_dir + "/metadata.db");
  if (!store.ok()) return Fail(store.status().Annotate("open metadata store"));
  Result<std::unique_ptr<ThinPool>> pool = OpenDmPool(config.pool_name);
  if (!pool.ok()) return Fail(pool.status().Annotate("open thin pool " + config.pool_name));
  SnapshotterOptions options;
  options.base_size_bytes = config.base_size_bytes;
  options.async_remove = config.async_remove;
  options.min_free_space_percent = config.min_free_space_percent;
  Result<std::unique_ptr<Snapshotter>> snapshotter =
      Snapshotter::Open(std::move(*store), std::move(*pool),
                        MakeExtFilesystem(config.fs_type, config.fs_options), options);
  if (!snapshotter.ok()) return Fail(snapshotter.status().Annotate("open snapshotter"));

  SnapshotsService service(snapshotter->get());
  Result<std::unique_ptr<Server>> server = Server::Start(config.socket, &service);
  if (!server.ok()) {
    (*snapshotter)->Close();
    return Fail(server.status().Annotate("start server"));
  }
  // Only now: the reconciliation is done and the socket serves (readiness.h).
  if (Status notified = NotifyReady(config.socket); !notified.ok()) {
    spdlog::warn("{}", notified.ToString());
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("received {}, shutting down", strsignal(signal_number));
  if (Status notified = NotifyStopping(); !notified.ok()) spdlog::warn("{}", notified.ToString());
  (*server)->Shutdown(kShutdownGrace);
  (*snapshotter)->Close();
  snapshotter->reset();  // closes the database
  close(*lock_fd);
  spdlog::info("thinsnapd stopped");
  return 0;
}

}  // namespace
}  // namespace thinsnap

int main(int argc, char** argv) { return thinsnap::Run(argc, argv); }
