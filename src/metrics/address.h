// ValidateMetricsAddress: what metrics_address may say, so that the /metrics
// endpoint binds exactly where it is configured. Apart from metrics.h so
// that the config parser can check it without linking the HTTP server.
#pragma once

#include <string>

#include "base/status.h"

namespace thinsnap {

// OK for "" (metrics off), "<ipv4>:<port>" and "[<ipv6>]:<port>" with a
// numeric address and a port in 1..65535: the endpoint binds exactly there.
// Host names are refused (they could resolve to several addresses), and so
// is "unix:<path>": the HTTP server in Debian's prometheus-cpp (civetweb
// 1.15) cannot listen on a unix socket.
Status ValidateMetricsAddress(const std::string& address);

}  // namespace thinsnap
