// Readiness and stopping notifications to the service manager.
//
// Contract: thinsnapd runs as a systemd `Type=notify` service
// (deploy/thinsnapd.service), and units ordered after it (containerd) start
// only once NotifyReady has been sent. The caller sends it only after the
// startup reconciliation has finished and the gRPC server listens on its
// socket, so "ready" means a Snapshots call made now is served. NotifyStopping
// is sent when a stop signal arrives, before in-flight calls are drained.
//
// Both go through sd_notify(3) to $NOTIFY_SOCKET. Without $NOTIFY_SOCKET (not
// started by systemd, or another Type=) they do nothing and return OK. A
// failure to send is returned as an error: the caller logs it; serving goes on,
// since systemd then reports the start as timed out with the daemon's log.
#pragma once

#include <string>

#include "base/status.h"

namespace thinsnap {

// READY=1, with STATUS= naming the socket.
Status NotifyReady(const std::string& socket_path);

// STOPPING=1.
Status NotifyStopping();

}  // namespace thinsnap
