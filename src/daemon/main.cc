// thinsnapd: serves containerd's snapshots API over a device-mapper thin pool.
//
// Startup claims root_dir (daemon/root_dir.h), then opens, in order, the
// pool, the metadata store, the filesystem and the Snapshotter (which
// reconciles the pool with the store), starts /metrics if metrics_address is
// set, then binds the socket and only then tells systemd it is ready
// (readiness.h). SIGTERM/SIGINT stop accepting calls, let in-flight ones
// finish, and close the Snapshotter and the database before exiting 0. Any
// startup failure prints one clear line, removes what this start created in
// root_dir, and exits 1.
#include <google/protobuf/stubs/logging.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "daemon/config.h"
#include "daemon/readiness.h"
#include "daemon/root_dir.h"
#include "fs/filesystem.h"
#include "metadata/store.h"
#include "metrics/metrics.h"
#include "pool/dm_pool.h"
#include "rpc/server.h"
#include "rpc/snapshots_service.h"
#include "snapshot/snapshotter.h"

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

// Opens everything, serves until SIGTERM/SIGINT, and shuts down. Returns the
// exit code. Everything it opened is closed when it returns, so a failed
// start can then remove what it created in root_dir.
int Serve(const Config& config, RootDirClaim& claim, const sigset_t& stop_signals) {
  // The pool before the store: its usual failures (no device-mapper, no such
  // pool) then never get as far as creating a database.
  Result<std::unique_ptr<ThinPool>> pool = OpenDmPool(config.pool_name);
  if (!pool.ok()) return Fail(pool.status().Annotate("open thin pool " + config.pool_name));
  const std::string db_path = config.root_dir + "/metadata.db";
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) claim.NoteCreated(db_path + suffix);
  Result<std::unique_ptr<Store>> store = Store::Open(db_path);
  if (!store.ok()) return Fail(store.status().Annotate("open metadata store"));

  std::unique_ptr<Metrics> metrics;
  ThinPool* raw_pool = pool->get();
  Store* raw_store = store->get();
  if (!config.metrics_address.empty()) {
    metrics = std::make_unique<Metrics>(THINSNAP_VERSION);
    *pool = metrics->InstrumentPool(std::move(*pool));
  }
  SnapshotterOptions options;
  options.base_size_bytes = config.base_size_bytes;
  options.async_remove = config.async_remove;
  options.discard_unused_blocks = config.discard_unused_blocks;
  options.max_snapshot_size_bytes = config.max_snapshot_size_bytes;
  options.autoextend.threshold_percent = config.autoextend_threshold_percent;
  options.autoextend.grow_percent = config.autoextend_percent;
  options.autoextend.max_data_bytes = config.autoextend_max_size_bytes;
  options.min_free_space_percent = config.min_free_space_percent;
  if (metrics) {
    options.on_reclaim_pass = [m = metrics.get()](const ReclaimPass& pass) {
      m->RecordReclaimPass(pass);
    };
  }
  Result<std::unique_ptr<Snapshotter>> snapshotter =
      Snapshotter::Open(std::move(*store), std::move(*pool),
                        MakeExtFilesystem(config.fs_type, config.fs_options), options);
  if (!snapshotter.ok()) return Fail(snapshotter.status().Annotate("open snapshotter"));

  ServerOptions server_options;
  if (metrics) {
    const auto& reconcile = (*snapshotter)->startup_reconcile();
    metrics->RecordReconcile(reconcile.report, reconcile.seconds);
    metrics->WatchState(raw_pool, raw_store);
    if (Status serving = metrics->Serve(config.metrics_address); !serving.ok()) {
      (*snapshotter)->Close();
      return Fail(serving);
    }
    server_options.interceptors.push_back(metrics->RpcInterceptorFactory());
  }
  SnapshotsService service(snapshotter->get());
  Result<std::unique_ptr<Server>> server =
      Server::Start(config.socket, &service, std::move(server_options));
  if (!server.ok()) {
    if (metrics) metrics->Stop();
    (*snapshotter)->Close();
    return Fail(server.status().Annotate("start server"));
  }
  claim.Keep();
  // Only now: the reconciliation is done and the socket serves (readiness.h).
  if (Status notified = NotifyReady(config.socket); !notified.ok()) {
    spdlog::warn("{}", notified.ToString());
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("received {}, shutting down", strsignal(signal_number));
  if (Status notified = NotifyStopping(); !notified.ok()) spdlog::warn("{}", notified.ToString());
  (*server)->Shutdown(kShutdownGrace);
  if (metrics) metrics->Stop();  // scrapes read the pool and the store
  (*snapshotter)->Close();
  snapshotter->reset();  // closes the database
  spdlog::info("thinsnapd stopped");
  return 0;
}

int Run(int argc, char** argv) {
  CLI::App app{"thinsnapd: containerd proxy snapshotter over device-mapper thin pools",
               "thinsnapd"};
  app.set_version_flag("--version", std::string("thinsnapd ") + THINSNAP_VERSION);
  std::string config_path, root_dir, socket, pool_name, log_level, metrics_address;
  // Each flag overrides its key from --config; the defaults named in the help
  // are the ones a key takes when neither the file nor the flag sets it.
  const Config defaults;
  app.add_option("--config", config_path, "TOML configuration file (default: none)");
  app.add_option("--root", root_dir,
                 "metadata directory (overrides root_dir; default " + defaults.root_dir + ")");
  app.add_option("--socket", socket,
                 "unix socket to serve on (overrides socket; default " + defaults.socket + ")");
  app.add_option("--pool", pool_name,
                 "device-mapper thin-pool name (overrides pool_name; REQUIRED unless the "
                 "--config file sets pool_name)");
  app.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error, critical or off (overrides log_level; default " +
                     defaults.log_level + ")");
  app.add_option("--metrics-address", metrics_address,
                 "serve /metrics on IP:PORT, \"\" for none (overrides metrics_address; "
                 "default none)");
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
  if (app.count("--metrics-address") > 0) config.metrics_address = metrics_address;
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

  Result<std::unique_ptr<RootDirClaim>> claim = RootDirClaim::Claim(config.root_dir);
  if (!claim.ok()) return Fail(claim.status());
  const int code = Serve(config, **claim, stop_signals);
  if (code != 0) (*claim)->Abandon();  // a failed start leaves root_dir as it was
  return code;
}

}  // namespace
}  // namespace thinsnap

int main(int argc, char** argv) { return thinsnap::Run(argc, argv); }
