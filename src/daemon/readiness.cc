#include "daemon/readiness.h"

#include <systemd/sd-daemon.h>

namespace thinsnap {
namespace {

Status Notify(const std::string& state) {
  // unset_environment = 0: STOPPING=1 is sent later through the same
  // $NOTIFY_SOCKET.
  int rc = sd_notify(0, state.c_str());
  if (rc < 0) return Status::FromErrno(-rc, "sd_notify to $NOTIFY_SOCKET");
  return Status::Ok();
}

}  // namespace

Status NotifyReady(const std::string& socket_path) {
  return Notify("READY=1\nSTATUS=serving on unix:" + socket_path);
}

Status NotifyStopping() { return Notify("STOPPING=1\nSTATUS=shutting down"); }

}  // namespace thinsnap
