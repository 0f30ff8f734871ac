#include "snapshot/reclaimer.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

#include "base/failpoint.h"

namespace thinsnap {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs fn(0) .. fn(n - 1) on up to `width` threads. The per-device steps of
// a reclaim mostly wait on the kernel (a device removal waits out RCU grace
// periods, a discard waits on the pool's worker), so several at once overlap
// those waits, and the pool's worker takes the queued discards together.
void ForEachParallel(size_t n, size_t width, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < std::min(width, n); ++t) helpers.emplace_back(work);
  work();
  for (std::thread& t : helpers) t.join();
}

// What to do with one deactivated target: discard nothing, everything it
// maps (`ranges` unset), or the ranges it wrote itself. `withdrawn` targets
// were renamed aside for the discard rather than removed.
struct DiscardPlan {
  bool withdrawn = false;
  bool discard = false;
  std::optional<std::vector<ByteRange>> ranges;
};

// Whether the reclaim discards `target` (decided before its ranges are
// read): then Withdraw keeps its device for the discard.
bool WantsDiscard(const ThinPool& pool, const ReclaimTarget& target,
                  const ReclaimOptions& options) {
  return options.discard && target.may_own_blocks && pool.DiscardsReachData();
}

// Plans the discards of the targets deactivated so far (`done[i]` OK): the
// own ranges of all of them come from one metadata snapshot. A target whose
// ranges cannot be read falls back to a discard of everything it maps, which
// is slower but gives back the same blocks.
std::vector<DiscardPlan> PlanDiscards(ThinPool& pool, const std::vector<ReclaimTarget>& targets,
                                      std::vector<Status>& done, const ReclaimOptions& options) {
  std::vector<DiscardPlan> plans(targets.size());
  std::vector<ThinId> ids;
  std::vector<size_t> asked;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (!done[i].ok() || !WantsDiscard(pool, targets[i], options)) continue;
    plans[i].withdrawn = true;
    plans[i].discard = true;
    ids.push_back(targets[i].id);
    asked.push_back(i);
  }
  if (ids.empty()) return plans;
  auto own = pool.OwnRanges(ids);
  if (!own.ok()) {
    spdlog::warn("reclaim: own blocks of {} device(s) unknown, discarding all they map: {}",
                 ids.size(), own.status().ToString());
    return plans;
  }
  for (size_t k = 0; k < asked.size(); ++k) {
    const size_t i = asked[k];
    Result<std::vector<ByteRange>>& ranges = (*own)[k];
    if (ranges.ok()) {
      plans[i].ranges = std::move(*ranges);
    } else if (ranges.status().code() == Code::kNotFound) {
      plans[i].discard = false;  // already deleted (a retry after a crash)
    } else {
      spdlog::warn("reclaim of thin id {}: own blocks unknown, discarding all it maps: {}",
                   targets[i].id, ranges.status().ToString());
    }
    done[i] = failpoint::Hit("reclaim.after_own_ranges");
  }
  return plans;
}

// Discards (as planned) and deletes one deactivated target.
Status Finish(ThinPool& pool, const ReclaimTarget& target, const DiscardPlan& plan,
              const ReclaimOptions& options) {
  Status discarded;
  if (plan.discard) {
    discarded = pool.DiscardInactive(target.id, options.span_bytes, plan.ranges);
    // Storage without discard support, or an id already deleted (a retry
    // after a crash), must not keep the id from being deleted: the space is
    // then only returned to the pool, not to the data device.
    if (!discarded.ok()) {
      spdlog::warn("thin id {}: deleting without discard: {}", target.id, discarded.ToString());
    } else {
      THINSNAP_FAILPOINT("reclaim.after_discard");
    }
  }
  // What Withdraw kept for a discard that did not happen goes now
  // (DiscardInactive removes it once it has run).
  if (plan.withdrawn && !(plan.discard && discarded.ok())) {
    THINSNAP_RETURN_IF_ERROR(pool.DeactivateForDelete(target.id));
  }
  THINSNAP_RETURN_IF_ERROR(DeleteIfPresent(pool, target.id));
  THINSNAP_FAILPOINT("remove.after_delete");
  return Status::Ok();
}

}  // namespace

ReclaimTarget TargetOf(const Intent& intent) { return {intent.thin_id, intent.may_own_blocks}; }

Status DeleteIfPresent(ThinPool& pool, ThinId id) {
  Status st = pool.Delete(id);
  return st.code() == Code::kNotFound ? Status::Ok() : st;
}

std::vector<Status> ReclaimThins(ThinPool& pool, const std::vector<ReclaimTarget>& targets,
                                 const ReclaimOptions& options) {
  std::vector<Status> done(targets.size());
  // Deactivation first: it fails, and changes nothing, while the device is
  // open, so nothing below can touch a device someone holds.
  // A device to be discarded is withdrawn (renamed out of reach, kept for
  // the discard); any other is removed.
  ForEachParallel(targets.size(), options.parallel, [&](size_t i) {
    done[i] = WantsDiscard(pool, targets[i], options) ? pool.Withdraw(targets[i].id)
                                                      : pool.DeactivateForDelete(targets[i].id);
    if (done[i].ok()) done[i] = failpoint::Hit("remove.after_deactivate");
  });
  const std::vector<DiscardPlan> plans = PlanDiscards(pool, targets, done, options);
  ForEachParallel(targets.size(), options.parallel, [&](size_t i) {
    if (done[i].ok()) done[i] = Finish(pool, targets[i], plans[i], options);
  });
  return done;
}

Status TrimUnused(ThinPool& pool, Filesystem& fs, ThinId id, int64_t created_ns) {
  const std::string device = pool.DevicePath(id);
  // Seconds, rounded down: a mount within the creation's second counts.
  const int64_t since = created_ns / 1'000'000'000;
  return pool.DiscardUnused(id, [&] { return fs.UnusedRanges(device, pool.block_bytes(), since); });
}

Reclaimer::Reclaimer(Store& store, ThinPool& pool, ReclaimOptions options,
                     std::function<void(ThinId)> released,
                     std::function<void(const ReclaimPass&)> on_pass)
    : store_(store),
      pool_(pool),
      options_(options),
      released_(std::move(released)),
      on_pass_(std::move(on_pass)) {}

Reclaimer::~Reclaimer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void Reclaimer::Start() {
  worker_ = std::thread([this] { Work(); });
}

void Reclaimer::Wake() {
  {
    std::lock_guard lock(mu_);
    wanted_ = true;
  }
  wake_cv_.notify_one();
}

Status Reclaimer::AwaitPass(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  const uint64_t mine = passes_started_ + 1;
  wanted_ = true;
  wake_cv_.notify_one();
  auto ended = [&] { return passes_done_ >= mine || stopping_; };
  if (deadline == std::chrono::steady_clock::time_point::max()) {
    done_cv_.wait(lock, ended);
  } else if (!done_cv_.wait_until(lock, deadline, ended)) {
    const int left = last_pass_.ok() ? last_pass_->left : 0;
    return Status::Unavailable(
        "cleanup: the reclaim pass did not end before the deadline" +
        (left ? "; the last one left " + std::to_string(left) + " device(s)" : std::string()) +
        ". It goes on in the background");
  }
  if (passes_done_ < mine) return Status::Unavailable("cleanup: thinsnapd is stopping");
  if (!last_pass_.ok()) return last_pass_.status().Annotate("cleanup");
  if (last_pass_->left > 0) {
    return Status::FailedPrecondition(
        "cleanup: " + std::to_string(last_pass_->left) +
        " removed snapshot device(s) not reclaimed yet, e.g. " + last_pass_->left_why +
        "; each is kept with its data until it is closed, then reclaimed");
  }
  return Status::Ok();
}

void Reclaimer::Work() {
  bool retry = false;  // the last pass left devices behind
  for (;;) {
    {
      std::unique_lock lock(mu_);
      auto ready = [&] { return wanted_ || stopping_; };
      if (retry) {
        wake_cv_.wait_for(lock, kBusyRetryInterval, ready);
      } else {
        wake_cv_.wait(lock, ready);
      }
      if (stopping_) return;
      wanted_ = false;
    }
    auto pass = RunPass();
    if (!pass.ok()) spdlog::warn("reclaim: {}", pass.status().ToString());
    retry = !pass.ok() || pass->left > 0;
  }
}

Result<ReclaimPass> Reclaimer::RunPass() {
  std::lock_guard pass_lock(pass_mu_);
  uint64_t number;
  {
    std::lock_guard lock(mu_);
    number = ++passes_started_;
  }
  const auto start = std::chrono::steady_clock::now();
  Result<ReclaimPass> result = [&]() -> Result<ReclaimPass> {
    auto intents = store_.ListIntents();
    if (!intents.ok()) return intents.status();
    // Creates in flight belong to a running Prepare; only deletes are ours.
    // No id lock is needed: a delete intent's id belongs to no snapshot any
    // more, so no request can reach it, and passes take turns.
    std::vector<Intent> deletes;
    for (const Intent& intent : *intents) {
      if (intent.op == IntentOp::kDelete) deletes.push_back(intent);
    }
    ReclaimPass pass;
    for (size_t begin = 0; begin < deletes.size(); begin += kBatch) {
      const size_t end = std::min(deletes.size(), begin + kBatch);
      std::vector<ReclaimTarget> targets;
      for (size_t i = begin; i < end; ++i) targets.push_back(TargetOf(deletes[i]));
      const std::vector<Status> done = ReclaimThins(pool_, targets, options_);
      std::vector<int64_t> finished;
      for (size_t k = 0; k < done.size(); ++k) {
        if (done[k].ok()) {
          finished.push_back(deletes[begin + k].id);
          continue;
        }
        if (pass.left_why.empty()) pass.left_why = done[k].ToString();
        ++pass.left;
        spdlog::info("reclaim of thin id {} deferred: {}", targets[k].id, done[k].ToString());
      }
      THINSNAP_RETURN_IF_ERROR(store_.FinishIntents(finished));
      for (size_t k = 0; k < done.size(); ++k) {
        if (done[k].ok() && released_) released_(targets[k].id);
      }
      pass.reclaimed += static_cast<int>(finished.size());
    }
    pass.seconds = SecondsSince(start);
    if (pass.left) spdlog::info("reclaim: {} device(s) still busy, will retry", pass.left);
    return pass;
  }();
  if (result.ok() && on_pass_) on_pass_(*result);
  {
    std::lock_guard lock(mu_);
    passes_done_ = number;
    last_pass_ = result;
  }
  done_cv_.notify_all();
  return result;
}

}  // namespace thinsnap
