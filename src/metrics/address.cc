#include "metrics/address.h"

#include <arpa/inet.h>

#include <charconv>

namespace thinsnap {

Status ValidateMetricsAddress(const std::string& address) {
  if (address.empty()) return Status::Ok();
  const auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("metrics_address \"" + address + "\": " + why);
  };
  if (address.rfind("unix:", 0) == 0) {
    return bad(
        "unix sockets are not supported (the HTTP server of Debian's prometheus-cpp, civetweb "
        "1.15, listens on TCP only); use <ip>:<port>, e.g. 127.0.0.1:9500");
  }
  std::string host, port;
  int family = AF_INET;
  if (address.front() == '[') {
    const size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return bad("expected [<ipv6>]:<port>");
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
    family = AF_INET6;
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) return bad("expected <ip>:<port>, e.g. 127.0.0.1:9500");
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(family, host.c_str(), buf) != 1) {
    return bad("\"" + host + "\" is not a numeric " + (family == AF_INET ? "IPv4" : "IPv6") +
               " address (host names are refused: the endpoint binds exactly one address)");
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return bad("port must be a number from 1 to 65535");
  }
  return Status::Ok();
}

}  // namespace thinsnap
