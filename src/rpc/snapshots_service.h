// SnapshotsService: containerd's snapshots.v1.Snapshots gRPC API over a
// Snapshotter. It only translates: protobuf <-> thinsnap types and
// thinsnap::Code -> grpc::StatusCode. All snapshot semantics live in the
// Snapshotter.
//
// Keys are global. containerd's metadata layer has already prefixed them with
// its namespace, and its garbage collector calls without a namespace, so the
// `containerd-namespace` metadata is only logged, never required. The
// `snapshotter` request field is ignored: a proxy plugin serves exactly one.
//
// No exception escapes a handler: one becomes INTERNAL and a log line.
#pragma once

#include <grpcpp/grpcpp.h>

#include "base/status.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "snapshot/snapshotter.h"

namespace thinsnap {

// The exact mapping of a thinsnap Status onto the wire.
grpc::Status ToGrpcStatus(const Status& status);

class SnapshotsService final : public containerd::services::snapshots::v1::Snapshots::Service {
 public:
  // List sends at most this many Info per response message (and fewer if the
  // message would grow past kListBatchBytes) so that a huge listing never
  // trips a client's 4 MiB receive limit.
  static constexpr int kListBatchSize = 100;
  static constexpr size_t kListBatchBytes = 1 << 20;

  // `snapshotter` must outlive the service.
  explicit SnapshotsService(Snapshotter* snapshotter) : snapshotter_(snapshotter) {}

  grpc::Status Prepare(
      grpc::ServerContext* context,
      const containerd::services::snapshots::v1::PrepareSnapshotRequest* request,
      containerd::services::snapshots::v1::PrepareSnapshotResponse* response) override;
  grpc::Status View(grpc::ServerContext* context,
                    const containerd::services::snapshots::v1::ViewSnapshotRequest* request,
                    containerd::services::snapshots::v1::ViewSnapshotResponse* response) override;
  grpc::Status Mounts(grpc::ServerContext* context,
                      const containerd::services::snapshots::v1::MountsRequest* request,
                      containerd::services::snapshots::v1::MountsResponse* response) override;
  grpc::Status Commit(grpc::ServerContext* context,
                      const containerd::services::snapshots::v1::CommitSnapshotRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status Remove(grpc::ServerContext* context,
                      const containerd::services::snapshots::v1::RemoveSnapshotRequest* request,
                      google::protobuf::Empty* response) override;
  grpc::Status Stat(grpc::ServerContext* context,
                    const containerd::services::snapshots::v1::StatSnapshotRequest* request,
                    containerd::services::snapshots::v1::StatSnapshotResponse* response) override;
  grpc::Status Update(
      grpc::ServerContext* context,
      const containerd::services::snapshots::v1::UpdateSnapshotRequest* request,
      containerd::services::snapshots::v1::UpdateSnapshotResponse* response) override;
  grpc::Status List(grpc::ServerContext* context,
                    const containerd::services::snapshots::v1::ListSnapshotsRequest* request,
                    grpc::ServerWriter<containerd::services::snapshots::v1::ListSnapshotsResponse>*
                        writer) override;
  grpc::Status Usage(grpc::ServerContext* context,
                     const containerd::services::snapshots::v1::UsageRequest* request,
                     containerd::services::snapshots::v1::UsageResponse* response) override;
  grpc::Status Cleanup(grpc::ServerContext* context,
                       const containerd::services::snapshots::v1::CleanupRequest* request,
                       google::protobuf::Empty* response) override;

 private:
  Snapshotter* const snapshotter_;
};

}  // namespace thinsnap
