#include "base/failpoint.h"

#include <csignal>
#include <cstdlib>
#include <map>
#include <string>

namespace thinsnap::failpoint {
namespace {

enum class Action { kKill, kError };

// Parsed once: the set of enabled points never changes while running.
const std::map<std::string, Action, std::less<>>& Enabled() {
  static const auto* enabled = [] {
    auto* m = new std::map<std::string, Action, std::less<>>();
    const char* env = std::getenv("THINSNAP_FAILPOINTS");
    std::string_view spec = env ? env : "";
    while (!spec.empty()) {
      size_t comma = spec.find(',');
      std::string_view item = spec.substr(0, comma);
      spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
      size_t eq = item.find('=');
      if (item.empty()) continue;
      std::string_view action = eq == std::string_view::npos ? "kill" : item.substr(eq + 1);
      (*m)[std::string(item.substr(0, eq))] = action == "error" ? Action::kError : Action::kKill;
    }
    return m;
  }();
  return *enabled;
}

}  // namespace

Status Hit(std::string_view name) {
  const auto& enabled = Enabled();
  if (enabled.empty()) return Status::Ok();
  auto it = enabled.find(name);
  if (it == enabled.end()) return Status::Ok();
  if (it->second == Action::kKill) std::raise(SIGKILL);
  return Status::Internal("failpoint " + std::string(name));
}

}  // namespace thinsnap::failpoint
