#include "pool/autoextend.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace thinsnap {
namespace {

constexpr uint64_t kMetaBlockBytes = 4096;

double UsedPercent(uint64_t used, uint64_t total) {
  return total == 0 ? 0.0 : 100.0 * static_cast<double>(used) / static_cast<double>(total);
}

// `size` grown by `percent`, rounded up to `unit`, capped at `cap`.
uint64_t Grown(uint64_t size, double percent, uint64_t unit, uint64_t cap) {
  const auto more = static_cast<uint64_t>(static_cast<double>(size) * percent / 100.0);
  const uint64_t target = (size + std::max(more, unit) + unit - 1) / unit * unit;
  return std::min(target, cap / unit * unit);
}

}  // namespace

PoolAutoextender::PoolAutoextender(ThinPool& pool, AutoextendOptions options)
    : pool_(pool), options_(options) {}

PoolAutoextender::~PoolAutoextender() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PoolAutoextender::Start() {
  if (options_.threshold_percent <= 0) return;
  thread_ = std::thread([this] { Run(); });
}

void PoolAutoextender::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    auto grew = CheckOnce();
    if (!grew.ok()) spdlog::warn("autoextend: {}", grew.status().ToString());
    lock.lock();
    cv_.wait_for(lock, options_.interval, [&] { return stopping_; });
  }
}

Result<bool> PoolAutoextender::CheckOnce() {
  if (gave_up_) return false;
  auto st = pool_.QueryStatus();
  if (!st.ok()) return st.status();
  if (st->failed || st->read_only) return false;
  const uint64_t block = st->data_block_bytes;
  const uint64_t data = st->data_total_blocks * block;
  const uint64_t meta = st->meta_total_blocks * kMetaBlockBytes;
  const bool data_due =
      UsedPercent(st->data_used_blocks, st->data_total_blocks) >= options_.threshold_percent;
  uint64_t new_data = data, new_meta = meta;
  if (data_due) new_data = Grown(data, options_.grow_percent, block, options_.max_data_bytes);
  if (UsedPercent(st->meta_used_blocks, st->meta_total_blocks) >= options_.threshold_percent) {
    new_meta = Grown(meta, options_.grow_percent, kMetaBlockBytes, kMaxPoolMetadataBytes);
  }
  if (new_data <= data && new_meta <= meta) {
    // Due but capped: the data is at its maximum.
    if (data_due) {
      spdlog::warn("autoextend: pool {} is at its maximum of {} bytes of data; not growing",
                   pool_.name(), options_.max_data_bytes);
      gave_up_ = true;
    }
    return false;
  }
  Status grown = pool_.Grow(new_data, new_meta);
  if (grown.code() == Code::kFailedPrecondition) {
    spdlog::warn("autoextend: pool {} cannot be grown by thinsnapd ({}); use LVM's autoextend",
                 pool_.name(), grown.message());
    gave_up_ = true;
    return false;
  }
  THINSNAP_RETURN_IF_ERROR(grown.Annotate("grow pool " + pool_.name()));
  spdlog::info("autoextend: pool {} data {} -> {} bytes, metadata {} -> {} bytes", pool_.name(),
               data, std::max(new_data, data), meta, std::max(new_meta, meta));
  return true;
}

}  // namespace thinsnap
