#include "metrics/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <array>
#include <exception>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace thinsnap {

namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// What containerd's users graph: 1 ms (a Stat) to 10 s (a Prepare stuck
// behind a full pool or a slow mkfs).
const prometheus::Histogram::BucketBoundaries& RpcBuckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return buckets;
}

// Pool messages and status reads take tens of microseconds to milliseconds;
// a suspend of a busy origin or a metadata commit on slow storage, seconds.
const prometheus::Histogram::BucketBoundaries& DmBuckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
  return buckets;
}

// The canonical names, as grpc-go and every gRPC dashboard spell them.
std::string CodeName(grpc::StatusCode code) {
  static constexpr std::array<const char*, 17> kNames = {"OK",
                                                         "CANCELLED",
                                                         "UNKNOWN",
                                                         "INVALID_ARGUMENT",
                                                         "DEADLINE_EXCEEDED",
                                                         "NOT_FOUND",
                                                         "ALREADY_EXISTS",
                                                         "PERMISSION_DENIED",
                                                         "RESOURCE_EXHAUSTED",
                                                         "FAILED_PRECONDITION",
                                                         "ABORTED",
                                                         "OUT_OF_RANGE",
                                                         "UNIMPLEMENTED",
                                                         "INTERNAL",
                                                         "UNAVAILABLE",
                                                         "DATA_LOSS",
                                                         "UNAUTHENTICATED"};
  const auto index = static_cast<size_t>(code);
  return index < kNames.size() ? kNames[index] : std::to_string(index);
}

}  // namespace

struct Metrics::Series {
  explicit Series(prometheus::Registry& registry)
      : rpc_requests(prometheus::BuildCounter()
                         .Name("thinsnap_grpc_requests_total")
                         .Help("Snapshots API requests handled, by method and gRPC code.")
                         .Register(registry)),
        rpc_duration(prometheus::BuildHistogram()
                         .Name("thinsnap_grpc_request_duration_seconds")
                         .Help("Time from a request's arrival to its status, by method.")
                         .Register(registry)),
        dm_duration(prometheus::BuildHistogram()
                        .Name("thinsnap_dm_operation_duration_seconds")
                        .Help("Latency of thin-pool operations (messages, status reads, "
                              "activation), by operation.")
                        .Register(registry)),
        dm_errors(prometheus::BuildCounter()
                      .Name("thinsnap_dm_operation_errors_total")
                      .Help("Thin-pool operations that returned an error, by operation.")
                      .Register(registry)),
        reconcile_repairs(prometheus::BuildCounter()
                              .Name("thinsnap_reconcile_repairs_total")
                              .Help("What start-up reconciliation repaired, by kind.")
                              .Register(registry)),
        reconcile_duration(prometheus::BuildGauge()
                               .Name("thinsnap_reconcile_duration_seconds")
                               .Help("How long start-up reconciliation took.")
                               .Register(registry)),
        reclaimed_devices(prometheus::BuildCounter()
                              .Name("thinsnap_reclaimed_devices_total")
                              .Help("Removed snapshots' thin devices taken out of the pool.")
                              .Register(registry)
                              .Add({})),
        reclaim_pass_duration(
            prometheus::BuildHistogram()
                .Name("thinsnap_reclaim_pass_duration_seconds")
                .Help("How long one pass of the background reclaim took (every pending "
                      "removal it could finish).")
                .Register(registry)
                .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30,
                                                                 60, 300})),
        build_info(prometheus::BuildGauge()
                       .Name("thinsnap_build_info")
                       .Help("Always 1; the version of the running thinsnapd is a label.")
                       .Register(registry)) {}

  prometheus::Family<prometheus::Counter>& rpc_requests;
  prometheus::Family<prometheus::Histogram>& rpc_duration;
  prometheus::Family<prometheus::Histogram>& dm_duration;
  prometheus::Family<prometheus::Counter>& dm_errors;
  prometheus::Family<prometheus::Counter>& reconcile_repairs;
  prometheus::Family<prometheus::Gauge>& reconcile_duration;
  prometheus::Counter& reclaimed_devices;
  prometheus::Histogram& reclaim_pass_duration;
  prometheus::Family<prometheus::Gauge>& build_info;
};

// --- RPC interceptor ---

namespace {

// Lives for one call; records it when its status is sent (or, if the call
// ends without one, e.g. the client went away, as CANCELLED).
class RpcInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcInterceptor(prometheus::Family<prometheus::Counter>& requests, prometheus::Histogram& duration,
                 std::string method)
      : requests_(requests), duration_(duration), method_(std::move(method)) {}

  ~RpcInterceptor() override {
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (!recorded_ && methods->QueryInterceptionHookPoint(
                          grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(grpc::StatusCode code) {
    recorded_ = true;
    duration_.Observe(SecondsSince(start_));
    requests_.Add({{"method", method_}, {"code", CodeName(code)}}).Increment();
  }

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Histogram& duration_;
  const std::string method_;
  const Clock::time_point start_ = Clock::now();
  bool recorded_ = false;
};

class RpcInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  RpcInterceptorFactory(prometheus::Family<prometheus::Counter>& requests,
                        prometheus::Family<prometheus::Histogram>& duration)
      : requests_(requests), duration_(duration) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // "/containerd.services.snapshots.v1.Snapshots/Prepare" -> "Prepare"
    std::string method = info->method() != nullptr ? info->method() : "";
    method = method.substr(method.rfind('/') + 1);
    prometheus::Histogram& duration = duration_.Add({{"method", method}}, RpcBuckets());
    return new RpcInterceptor(requests_, duration, std::move(method));
  }

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& duration_;
};

// --- Pool decorator ---

// One operation's histogram and error counter, created once.
struct OpSeries {
  OpSeries(prometheus::Family<prometheus::Histogram>& duration,
           prometheus::Family<prometheus::Counter>& errors, const std::string& op)
      : duration(duration.Add({{"operation", op}}, DmBuckets())),
        errors(errors.Add({{"operation", op}})) {}

  // Times `fn` and counts it as failed if it returns a non-OK Status/Result.
  template <typename Fn>
  auto Time(Fn&& fn) {
    const Clock::time_point start = Clock::now();
    auto result = fn();
    duration.Observe(SecondsSince(start));
    if (!result.ok()) errors.Increment();
    return result;
  }

  prometheus::Histogram& duration;
  prometheus::Counter& errors;
};

class MeteredPool final : public ThinPool {
 public:
  MeteredPool(std::unique_ptr<ThinPool> pool, prometheus::Family<prometheus::Histogram>& duration,
              prometheus::Family<prometheus::Counter>& errors)
      : pool_(std::move(pool)),
        create_thin_(duration, errors, "create_thin"),
        create_snap_(duration, errors, "create_snap"),
        delete_(duration, errors, "delete"),
        status_(duration, errors, "status"),
        list_thin_ids_(duration, errors, "list_thin_ids"),
        activate_(duration, errors, "activate"),
        deactivate_(duration, errors, "deactivate"),
        deactivate_for_delete_(duration, errors, "deactivate_for_delete"),
        withdraw_(duration, errors, "withdraw"),
        list_active_(duration, errors, "list_active"),
        mapped_bytes_(duration, errors, "mapped_bytes"),
        list_usage_(duration, errors, "list_usage"),
        own_ranges_(duration, errors, "own_ranges"),
        discard_inactive_(duration, errors, "discard_inactive"),
        discard_unused_(duration, errors, "discard_unused"),
        grow_(duration, errors, "grow") {}

  const std::string& name() const override { return pool_->name(); }
  uint64_t block_bytes() const override { return pool_->block_bytes(); }
  Status CreateThin(ThinId id) override {
    return create_thin_.Time([&] { return pool_->CreateThin(id); });
  }
  Status CreateSnap(ThinId id, ThinId origin) override {
    return create_snap_.Time([&] { return pool_->CreateSnap(id, origin); });
  }
  Status Delete(ThinId id) override {
    return delete_.Time([&] { return pool_->Delete(id); });
  }
  Result<PoolStatus> QueryStatus() override {
    return status_.Time([&] { return pool_->QueryStatus(); });
  }
  Result<std::vector<ThinId>> ListThinIds() override {
    return list_thin_ids_.Time([&] { return pool_->ListThinIds(); });
  }
  std::string DevicePath(ThinId id) const override { return pool_->DevicePath(id); }
  Status Activate(ThinId id, uint64_t size_bytes, Access access) override {
    return activate_.Time([&] { return pool_->Activate(id, size_bytes, access); });
  }
  Status Deactivate(ThinId id) override {
    return deactivate_.Time([&] { return pool_->Deactivate(id); });
  }
  Status DeactivateForDelete(ThinId id) override {
    return deactivate_for_delete_.Time([&] { return pool_->DeactivateForDelete(id); });
  }
  Status Withdraw(ThinId id) override {
    return withdraw_.Time([&] { return pool_->Withdraw(id); });
  }
  Result<std::vector<ThinId>> ListActive() override {
    return list_active_.Time([&] { return pool_->ListActive(); });
  }
  Result<std::vector<ThinId>> ListHalfMade() override { return pool_->ListHalfMade(); }
  Result<uint64_t> MappedBytes(ThinId id) override {
    return mapped_bytes_.Time([&] { return pool_->MappedBytes(id); });
  }
  Result<std::vector<ThinUsage>> ListUsage() override {
    return list_usage_.Time([&] { return pool_->ListUsage(); });
  }
  bool DiscardsReachData() const override { return pool_->DiscardsReachData(); }
  Result<std::vector<Result<std::vector<ByteRange>>>> OwnRanges(
      const std::vector<ThinId>& ids) override {
    return own_ranges_.Time([&] { return pool_->OwnRanges(ids); });
  }
  Status DiscardInactive(ThinId id, uint64_t span_bytes,
                         const std::optional<std::vector<ByteRange>>& ranges) override {
    return discard_inactive_.Time([&] { return pool_->DiscardInactive(id, span_bytes, ranges); });
  }
  Status DiscardUnused(ThinId id, const UnusedRangesFn& find_unused) override {
    return discard_unused_.Time([&] { return pool_->DiscardUnused(id, find_unused); });
  }
  Status Grow(uint64_t data_bytes, uint64_t meta_bytes) override {
    return grow_.Time([&] { return pool_->Grow(data_bytes, meta_bytes); });
  }

 private:
  const std::unique_ptr<ThinPool> pool_;
  OpSeries create_thin_, create_snap_, delete_, status_, list_thin_ids_, activate_, deactivate_,
      deactivate_for_delete_, withdraw_, list_active_, mapped_bytes_, list_usage_, own_ranges_,
      discard_inactive_, discard_unused_, grow_;
};

// --- Scrape-time state ---

prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  return family;
}

void AddSample(prometheus::MetricFamily& family,
               std::vector<prometheus::ClientMetric::Label> labels, double value) {
  prometheus::ClientMetric sample;
  sample.label = std::move(labels);
  sample.gauge.value = value;
  family.metric.push_back(std::move(sample));
}

prometheus::MetricFamily Gauge(std::string name, std::string help,
                               std::vector<prometheus::ClientMetric::Label> labels, double value) {
  prometheus::MetricFamily family = GaugeFamily(std::move(name), std::move(help));
  AddSample(family, std::move(labels), value);
  return family;
}

}  // namespace

class Metrics::StateCollector final : public prometheus::Collectable {
 public:
  void Watch(ThinPool* pool, Store* store) {
    std::lock_guard lock(mu_);
    pool_ = pool;
    store_ = store;
    taken_.reset();
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard lock(mu_);
    if (pool_ == nullptr) return {};
    if (!taken_ || Clock::now() - *taken_ >= kStateMaxAge) {
      reading_ = Read();
      taken_ = Clock::now();
    }
    return reading_;
  }

 private:
  std::vector<prometheus::MetricFamily> Read() const {
    std::vector<prometheus::MetricFamily> out;
    const std::vector<prometheus::ClientMetric::Label> pool_label = {{"pool", pool_->name()}};
    Result<PoolStatus> status = pool_->QueryStatus();
    if (!status.ok()) spdlog::warn("metrics: pool status: {}", status.status().ToString());
    out.push_back(Gauge("thinsnap_pool_status_up",
                        "1 if the last scrape could read the pool's status, else 0 (and the "
                        "pool space and flag series are absent).",
                        pool_label, status.ok() ? 1 : 0));
    if (status.ok()) {
      const PoolStatus& s = *status;
      constexpr double kMetaBlockBytes = 4096;
      const double block = static_cast<double>(s.data_block_bytes);
      out.push_back(Gauge("thinsnap_pool_data_used_bytes", "Data space of the pool in use.",
                          pool_label, block * static_cast<double>(s.data_used_blocks)));
      out.push_back(Gauge("thinsnap_pool_data_size_bytes", "Data space of the pool in all.",
                          pool_label, block * static_cast<double>(s.data_total_blocks)));
      out.push_back(Gauge("thinsnap_pool_metadata_used_bytes", "Metadata space of the pool in use.",
                          pool_label, kMetaBlockBytes * static_cast<double>(s.meta_used_blocks)));
      out.push_back(Gauge("thinsnap_pool_metadata_size_bytes", "Metadata space of the pool in all.",
                          pool_label, kMetaBlockBytes * static_cast<double>(s.meta_total_blocks)));
      out.push_back(Gauge("thinsnap_pool_failed", "1 if the pool's status is Fail.", pool_label,
                          s.failed ? 1 : 0));
      out.push_back(Gauge("thinsnap_pool_needs_check",
                          "1 if the kernel flagged the pool's metadata needs_check.", pool_label,
                          s.needs_check ? 1 : 0));
      out.push_back(Gauge("thinsnap_pool_read_only", "1 if the pool is in read-only mode.",
                          pool_label, s.read_only ? 1 : 0));
      out.push_back(Gauge("thinsnap_pool_out_of_data_space",
                          "1 if the pool is in out_of_data_space mode.", pool_label,
                          s.out_of_data_space ? 1 : 0));
      out.push_back(Gauge("thinsnap_pool_error_if_no_space",
                          "1 if a full pool fails writes (error_if_no_space), 0 if it queues "
                          "them.",
                          pool_label, s.error_if_no_space ? 1 : 0));
    }
    Result<StoreCounts> counts = store_->Counts();
    if (!counts.ok()) {
      spdlog::warn("metrics: store counts: {}", counts.status().ToString());
      return out;
    }
    prometheus::MetricFamily snapshots =
        GaugeFamily("thinsnap_snapshots", "Snapshots in the metadata, by kind.");
    AddSample(snapshots, {{"kind", "active"}}, static_cast<double>(counts->active));
    AddSample(snapshots, {{"kind", "view"}}, static_cast<double>(counts->view));
    AddSample(snapshots, {{"kind", "committed"}}, static_cast<double>(counts->committed));
    out.push_back(std::move(snapshots));
    out.push_back(Gauge("thinsnap_thin_ids_in_use",
                        "Thin device ids the metadata accounts for (snapshots, intents and "
                        "the base device).",
                        {}, static_cast<double>(counts->thin_ids_in_use)));
    out.push_back(Gauge("thinsnap_pending_delete_intents",
                        "Thin devices whose deletion is recorded but not yet done (async "
                        "remove, busy devices).",
                        {}, static_cast<double>(counts->pending_delete_intents)));
    return out;
  }

  mutable std::mutex mu_;
  ThinPool* pool_ = nullptr;                               // guarded by mu_
  Store* store_ = nullptr;                                 // guarded by mu_
  mutable std::optional<Clock::time_point> taken_;         // guarded by mu_
  mutable std::vector<prometheus::MetricFamily> reading_;  // guarded by mu_
};

Metrics::Metrics(const std::string& version)
    : registry_(std::make_shared<prometheus::Registry>()),
      series_(std::make_unique<Series>(*registry_)),
      state_(std::make_shared<StateCollector>()) {
  series_->build_info.Add({{"version", version}}).Set(1);
}

Metrics::~Metrics() { Stop(); }

std::unique_ptr<ThinPool> Metrics::InstrumentPool(std::unique_ptr<ThinPool> pool) {
  return std::make_unique<MeteredPool>(std::move(pool), series_->dm_duration, series_->dm_errors);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
Metrics::RpcInterceptorFactory() {
  return std::make_unique<thinsnap::RpcInterceptorFactory>(series_->rpc_requests,
                                                           series_->rpc_duration);
}

void Metrics::RecordReconcile(const ReconcileReport& report, double seconds) {
  const std::pair<const char*, size_t> repairs[] = {
      {"unfinished_create", static_cast<size_t>(report.unfinished_creates)},
      {"unfinished_delete", static_cast<size_t>(report.unfinished_deletes)},
      {"orphan_thin_id", report.orphan_ids.size()},
      {"stray_device", report.stray_devices.size()},
      {"reactivated", report.reactivated.size()},
      {"failed", report.problems.size()},
  };
  for (const auto& [kind, count] : repairs) {
    series_->reconcile_repairs.Add({{"kind", kind}}).Increment(static_cast<double>(count));
  }
  series_->reconcile_duration.Add({}).Set(seconds);
}

void Metrics::RecordReclaimPass(const ReclaimPass& pass) {
  series_->reclaimed_devices.Increment(pass.reclaimed);
  series_->reclaim_pass_duration.Observe(pass.seconds);
}

void Metrics::WatchState(ThinPool* pool, Store* store) { state_->Watch(pool, store); }

Status Metrics::Serve(const std::string& address) {
  THINSNAP_RETURN_IF_ERROR(ValidateMetricsAddress(address));
  if (address.empty()) return Status::InvalidArgument("no metrics address");
  try {
    // Two threads: a scrape never waits behind another scraper's.
    auto exposer = std::make_unique<prometheus::Exposer>(address, 2);
    exposer->RegisterCollectable(registry_);
    exposer->RegisterCollectable(state_);
    exposer_ = std::move(exposer);
  } catch (const std::exception& e) {
    return Status::Unavailable("cannot serve metrics on " + address + ": " + e.what());
  }
  spdlog::info("serving metrics on http://{}/metrics", address);
  return Status::Ok();
}

void Metrics::Stop() { exposer_.reset(); }

std::string Metrics::Exposition() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& family : state_->Collect()) families.push_back(std::move(family));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace thinsnap
