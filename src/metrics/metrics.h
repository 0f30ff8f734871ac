// Metrics: thinsnapd's Prometheus series and the /metrics endpoint.
//
// One Metrics object per daemon holds every series. Three kinds of sources
// feed it:
//   - the gRPC layer, through RpcInterceptorFactory(): requests by method and
//     gRPC code, and a latency histogram by method (1 ms .. 10 s);
//   - the pool, through InstrumentPool(): device-mapper operation latency by
//     operation, and failures by operation;
//   - the background reclaim, through RecordReclaimPass(): devices reclaimed
//     and pass durations;
//   - readings taken at scrape time (WatchState): pool space and flags, and
//     the store's snapshot, thin-id and pending-delete counts (the latter is
//     the reclaim backlog).
// Start-up reconciliation and build info are recorded once.
//
// A scrape never commits pool metadata (the pool status is read with
// DmPool's no-flush status) and never waits behind requests for long: the
// state reading is one no-flush status ioctl plus one short SQLite read, and
// is reused for kStateMaxAge so a burst of scrapers costs one reading.
//
// Every name follows Prometheus conventions: a `thinsnap_` prefix, base
// units (`_bytes`, `_seconds`), `_total` on counters, 0/1 for flags. The
// names are listed in docs/operations.md; deploy/prometheus-rules.yml and
// deploy/grafana-dashboard.json are checked against them
// (tests/metrics/check_names.py).
//
// Thread safety: every method may be called concurrently, except Serve and
// Stop, which the daemon calls once each from its main thread.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <chrono>
#include <memory>
#include <string>

#include "base/status.h"
#include "metadata/store.h"
#include "metrics/address.h"
#include "pool/pool.h"
#include "snapshot/reclaimer.h"
#include "snapshot/reconciler.h"

namespace prometheus {
class Exposer;
class Registry;
class Collectable;
}  // namespace prometheus

namespace thinsnap {

class Metrics {
 public:
  static constexpr std::chrono::milliseconds kStateMaxAge{1000};

  // `version` becomes thinsnap_build_info{version=...}.
  explicit Metrics(const std::string& version);
  ~Metrics();

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Returns `pool` wrapped so that every operation's latency and failure is
  // recorded. The wrapper forwards everything unchanged.
  std::unique_ptr<ThinPool> InstrumentPool(std::unique_ptr<ThinPool> pool);

  // An interceptor factory for grpc::ServerBuilder. Register it after any
  // interceptor that rewrites the status, so the code recorded is the one the
  // client receives.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcInterceptorFactory();

  // Records what start-up reconciliation repaired, by kind, and its duration.
  void RecordReconcile(const ReconcileReport& report, double seconds);
  // Records one background reclaim pass: devices reclaimed, and its duration.
  // The backlog is thinsnap_pending_delete_intents, read at scrape time.
  void RecordReclaimPass(const ReclaimPass& pass);

  // Reads pool and store state at scrape time. Neither is owned; both must
  // stay alive until Stop() (or destruction). `pool` should be the
  // uninstrumented pool, so scrapes do not show up as pool operations.
  void WatchState(ThinPool* pool, Store* store);

  // Serves GET /metrics on `address` ("<ipv4>:<port>" or "[<ipv6>]:<port>",
  // see ValidateMetricsAddress). Unavailable if it cannot bind.
  Status Serve(const std::string& address);
  // Stops serving; returns once no scrape is running. Idempotent.
  void Stop();

  // The exposition a scrape would return, in Prometheus text format.
  std::string Exposition() const;

 private:
  struct Series;
  class StateCollector;

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Series> series_;
  std::shared_ptr<StateCollector> state_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace thinsnap
