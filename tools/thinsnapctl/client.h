// The client commands: containerd's Snapshots gRPC service, spoken to the
// thinsnap daemon over its unix socket.
//
// Each function prints its result on stdout and returns the process exit
// code; a failed call prints "thinsnapctl: <GRPC_CODE>: <message>" on stderr
// and returns 1.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>

namespace thinsnap::ctl {

struct ClientOptions {
  std::string socket = "/run/thinsnap/thinsnap.sock";
  // The `snapshotter` field of every request; containerd sends the proxy
  // plugin's name there.
  std::string snapshotter = "thinsnap";
  // Sent as the containerd-namespace header when not empty.
  std::string ns;
  std::chrono::seconds timeout{60};
  bool json = false;
};

using Labels = std::map<std::string, std::string>;

int List(const ClientOptions& opts);
int Tree(const ClientOptions& opts);
int Info(const ClientOptions& opts, const std::string& key);
// Usage of one snapshot, or of every snapshot plus their total.
int Usage(const ClientOptions& opts, const std::optional<std::string>& key);
int Prepare(const ClientOptions& opts, const std::string& key, const std::string& parent,
            const Labels& labels);
int View(const ClientOptions& opts, const std::string& key, const std::string& parent,
         const Labels& labels);
int Mounts(const ClientOptions& opts, const std::string& key);
int Commit(const ClientOptions& opts, const std::string& name, const std::string& key,
           const Labels& labels);
int Remove(const ClientOptions& opts, const std::string& key);
int Cleanup(const ClientOptions& opts);

}  // namespace thinsnap::ctl
