// Fault-injection points for crash tests.
//
// Always compiled in, and inert unless the environment variable
// THINSNAP_FAILPOINTS names them:
//
//   THINSNAP_FAILPOINTS="create.after_snap=kill,remove.after_intent=error"
//
// `kill` raises SIGKILL (a crash at exactly that instant); `error` makes the
// step fail with Internal. A point costs one relaxed load when nothing is set.
#pragma once

#include <string_view>

#include "base/status.h"

namespace thinsnap::failpoint {

// Acts on the point `name` if it is enabled; returns the injected error.
Status Hit(std::string_view name);

}  // namespace thinsnap::failpoint

// Returns the injected error from the enclosing function.
#define THINSNAP_FAILPOINT(name) THINSNAP_RETURN_IF_ERROR(::thinsnap::failpoint::Hit(name))
