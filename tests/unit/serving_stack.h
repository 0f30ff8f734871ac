// The production gRPC stack over the in-memory fakes, for the rpc tests: a
// SQLite store in `dir`, a Snapshotter over a fake pool and filesystem, and a
// Server on a real unix socket at `socket_path`.
#pragma once

#include <memory>
#include <string>

#include "fake/fake_pool.h"
#include "metadata/store.h"
#include "rpc/server.h"
#include "rpc/snapshots_service.h"
#include "snapshot/snapshotter.h"

namespace thinsnap::testing {

struct ServingStack {
  std::shared_ptr<FakePoolControl> pool;
  std::unique_ptr<Snapshotter> snapshotter;
  std::unique_ptr<SnapshotsService> service;
  std::unique_ptr<Server> server;
};

inline Result<ServingStack> StartServingStack(const std::string& dir,
                                              const std::string& socket_path) {
  ServingStack stack;
  stack.pool = MakeFakePoolState();
  auto store = Store::Open(dir + "/metadata.db");
  if (!store.ok()) return store.status();
  auto snapshotter = Snapshotter::Open(std::move(store).value(), MakeFakePool(stack.pool),
                                       MakeFakeFilesystem(), SnapshotterOptions{});
  if (!snapshotter.ok()) return snapshotter.status();
  stack.snapshotter = std::move(snapshotter).value();
  stack.service = std::make_unique<SnapshotsService>(stack.snapshotter.get());
  auto server = Server::Start(socket_path, stack.service.get());
  if (!server.ok()) return server.status();
  stack.server = std::move(server).value();
  return stack;
}

}  // namespace thinsnap::testing
