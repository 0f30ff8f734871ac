#include "rpc/snapshots_service.h"

#include <google/protobuf/util/time_util.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <string>
#include <utility>
#include <vector>

namespace thinsnap {

namespace v1 = containerd::services::snapshots::v1;

namespace {

// Bounds on request parts the Snapshotter does not validate itself. They are
// far above anything containerd sends and keep a hostile request from making
// us copy megabytes into a filter or mask parser.
constexpr int kMaxFilters = 256;
constexpr size_t kMaxFilterBytes = 8192;
constexpr int kMaxMaskPaths = 1024;
constexpr size_t kMaxMaskPathBytes = 8192;

// Logs the namespace containerd sent, if any. Keys never depend on it: see
// the header.
void LogCall(const char* method, const grpc::ServerContext* context) {
  if (!spdlog::should_log(spdlog::level::debug)) return;
  const auto& metadata = context->client_metadata();
  auto ns = metadata.find("containerd-namespace");
  spdlog::debug("rpc {} namespace={}", method,
                ns == metadata.end() ? std::string("<none>")
                                     : std::string(ns->second.data(), ns->second.size()));
}

// Runs a handler body; the last line of defence against exceptions (e.g.
// std::bad_alloc) which must not unwind into gRPC's threads.
template <typename Body>
grpc::Status Guard(const char* method, const grpc::ServerContext* context, Body&& body) {
  try {
    LogCall(method, context);
    grpc::Status status = body();
    if (!status.ok()) {
      const bool expected = status.error_code() == grpc::StatusCode::NOT_FOUND ||
                            status.error_code() == grpc::StatusCode::ALREADY_EXISTS ||
                            status.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                            status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                            status.error_code() == grpc::StatusCode::CANCELLED;
      spdlog::log(expected ? spdlog::level::debug : spdlog::level::warn, "rpc {} failed: {}",
                  method, status.error_message());
    }
    return status;
  } catch (const std::exception& e) {
    spdlog::error("rpc {}: unexpected exception: {}", method, e.what());
    return grpc::Status(grpc::StatusCode::INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    spdlog::error("rpc {}: unexpected non-standard exception", method);
    return grpc::Status(grpc::StatusCode::INTERNAL, "internal error");
  }
}

// The client's deadline on the steady clock, less a margin for the answer to
// reach it in time; time_point::max() when the call has none.
std::chrono::steady_clock::time_point LocalDeadline(const grpc::ServerContext& context) {
  constexpr auto kReplyMargin = std::chrono::milliseconds(250);
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return std::chrono::steady_clock::time_point::max();
  }
  const auto left = deadline - std::chrono::system_clock::now() - kReplyMargin;
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(left);
}

Labels ToLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  return Labels(labels.begin(), labels.end());
}

void ToProto(const std::vector<Mount>& mounts,
             google::protobuf::RepeatedPtrField<containerd::types::Mount>* out) {
  for (const Mount& mount : mounts) {
    containerd::types::Mount* m = out->Add();
    m->set_type(mount.type);
    m->set_source(mount.source);
    m->set_target(mount.target);
    for (const std::string& option : mount.options) m->add_options(option);
  }
}

v1::Kind ToProto(Kind kind) {
  switch (kind) {
    case Kind::kView:
      return v1::VIEW;
    case Kind::kActive:
      return v1::ACTIVE;
    case Kind::kCommitted:
      return v1::COMMITTED;
    case Kind::kUnknown:
      break;
  }
  return v1::UNKNOWN;
}

void ToProto(const Info& info, v1::Info* out) {
  using google::protobuf::util::TimeUtil;
  out->set_name(info.name);
  out->set_parent(info.parent);
  out->set_kind(ToProto(info.kind));
  *out->mutable_created_at() = TimeUtil::NanosecondsToTimestamp(info.created_ns);
  *out->mutable_updated_at() = TimeUtil::NanosecondsToTimestamp(info.updated_ns);
  out->mutable_labels()->insert(info.labels.begin(), info.labels.end());
}

grpc::Status InvalidArgument(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

}  // namespace

grpc::Status ToGrpcStatus(const Status& status) {
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (status.code()) {
    case Code::kOk:
      return grpc::Status::OK;
    case Code::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case Code::kAlreadyExists:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case Code::kFailedPrecondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case Code::kInvalidArgument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case Code::kResourceExhausted:
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case Code::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case Code::kInternal:
      code = grpc::StatusCode::INTERNAL;
      break;
  }
  return grpc::Status(code, status.message());
}

grpc::Status SnapshotsService::Prepare(grpc::ServerContext* context,
                                       const v1::PrepareSnapshotRequest* request,
                                       v1::PrepareSnapshotResponse* response) {
  return Guard("Prepare", context, [&] {
    Result<std::vector<Mount>> mounts =
        snapshotter_->Prepare(request->key(), request->parent(), ToLabels(request->labels()));
    if (!mounts.ok()) return ToGrpcStatus(mounts.status());
    ToProto(*mounts, response->mutable_mounts());
    return grpc::Status::OK;
  });
}

grpc::Status SnapshotsService::View(grpc::ServerContext* context,
                                    const v1::ViewSnapshotRequest* request,
                                    v1::ViewSnapshotResponse* response) {
  return Guard("View", context, [&] {
    Result<std::vector<Mount>> mounts =
        snapshotter_->View(request->key(), request->parent(), ToLabels(request->labels()));
    if (!mounts.ok()) return ToGrpcStatus(mounts.status());
    ToProto(*mounts, response->mutable_mounts());
    return grpc::Status::OK;
  });
}

grpc::Status SnapshotsService::Mounts(grpc::ServerContext* context,
                                      const v1::MountsRequest* request,
                                      v1::MountsResponse* response) {
  return Guard("Mounts", context, [&] {
    Result<std::vector<Mount>> mounts = snapshotter_->Mounts(request->key());
    if (!mounts.ok()) return ToGrpcStatus(mounts.status());
    ToProto(*mounts, response->mutable_mounts());
    return grpc::Status::OK;
  });
}

grpc::Status SnapshotsService::Commit(grpc::ServerContext* context,
                                      const v1::CommitSnapshotRequest* request,
                                      google::protobuf::Empty* /*response*/) {
  return Guard("Commit", context, [&] {
    return ToGrpcStatus(
        snapshotter_->Commit(request->name(), request->key(), ToLabels(request->labels())));
  });
}

grpc::Status SnapshotsService::Remove(grpc::ServerContext* context,
                                      const v1::RemoveSnapshotRequest* request,
                                      google::protobuf::Empty* /*response*/) {
  return Guard("Remove", context,
               [&] { return ToGrpcStatus(snapshotter_->Remove(request->key())); });
}

grpc::Status SnapshotsService::Stat(grpc::ServerContext* context,
                                    const v1::StatSnapshotRequest* request,
                                    v1::StatSnapshotResponse* response) {
  return Guard("Stat", context, [&] {
    Result<Info> info = snapshotter_->Stat(request->key());
    if (!info.ok()) return ToGrpcStatus(info.status());
    ToProto(*info, response->mutable_info());
    return grpc::Status::OK;
  });
}

grpc::Status SnapshotsService::Update(grpc::ServerContext* context,
                                      const v1::UpdateSnapshotRequest* request,
                                      v1::UpdateSnapshotResponse* response) {
  return Guard("Update", context, [&] {
    const auto& paths = request->update_mask().paths();
    if (paths.size() > kMaxMaskPaths) {
      return InvalidArgument("update_mask has more than " + std::to_string(kMaxMaskPaths) +
                             " paths");
    }
    std::vector<std::string> field_paths;
    field_paths.reserve(paths.size());
    for (const std::string& path : paths) {
      if (path.size() > kMaxMaskPathBytes) {
        return InvalidArgument("update_mask path longer than " + std::to_string(kMaxMaskPathBytes) +
                               " bytes");
      }
      field_paths.push_back(path);
    }
    // Only name and labels are meaningful: the rest of Info is immutable.
    Info info;
    info.name = request->info().name();
    info.labels = ToLabels(request->info().labels());
    Result<Info> updated = snapshotter_->Update(info, field_paths);
    if (!updated.ok()) return ToGrpcStatus(updated.status());
    ToProto(*updated, response->mutable_info());
    return grpc::Status::OK;
  });
}

grpc::Status SnapshotsService::List(grpc::ServerContext* context,
                                    const v1::ListSnapshotsRequest* request,
                                    grpc::ServerWriter<v1::ListSnapshotsResponse>* writer) {
  return Guard("List", context, [&] {
    if (request->filters_size() > kMaxFilters) {
      return InvalidArgument("more than " + std::to_string(kMaxFilters) + " filters");
    }
    std::vector<std::string> filters;
    for (const std::string& filter : request->filters()) {
      if (filter.size() > kMaxFilterBytes) {
        return InvalidArgument("filter longer than " + std::to_string(kMaxFilterBytes) + " bytes");
      }
      filters.push_back(filter);
    }
    // Collect first, then send: the Snapshotter's walk must not wait on a
    // slow client's flow control. Each Info is converted once, straight into
    // the response message that will carry it: copying Infos into a vector
    // first cost a third of a 10,000-snapshot List.
    std::vector<v1::ListSnapshotsResponse> batches(1);
    size_t batch_bytes = 0;
    Status walked = snapshotter_->Walk(filters, [&](const Info& info) {
      if (batches.back().info_size() >= kListBatchSize || batch_bytes >= kListBatchBytes) {
        batches.emplace_back();
        batch_bytes = 0;
      }
      v1::Info* out = batches.back().add_info();
      ToProto(info, out);
      batch_bytes += out->ByteSizeLong();
      return Status::Ok();
    });
    if (!walked.ok()) return ToGrpcStatus(walked);
    for (const v1::ListSnapshotsResponse& batch : batches) {
      if (batch.info_size() == 0) continue;
      if (context->IsCancelled() || !writer->Write(batch)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
      }
    }
    return grpc::Status::OK;
  });
}

grpc::Status SnapshotsService::Usage(grpc::ServerContext* context, const v1::UsageRequest* request,
                                     v1::UsageResponse* response) {
  return Guard("Usage", context, [&] {
    Result<thinsnap::Usage> usage = snapshotter_->GetUsage(request->key());
    if (!usage.ok()) return ToGrpcStatus(usage.status());
    response->set_size(usage->size);
    response->set_inodes(usage->inodes);
    return grpc::Status::OK;
  });
}

grpc::Status SnapshotsService::Cleanup(grpc::ServerContext* context,
                                       const v1::CleanupRequest* /*request*/,
                                       google::protobuf::Empty* /*response*/) {
  return Guard("Cleanup", context,
               [&] { return ToGrpcStatus(snapshotter_->Cleanup(LocalDeadline(*context))); });
}

}  // namespace thinsnap
