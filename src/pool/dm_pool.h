// DmPool: the production ThinPool, a device-mapper thin-pool driven through
// the dm/ wrapper (libdevmapper ioctls, no dmsetup).
//
// Thin devices are named "<pool>-thin-<id>": the name derives from the id
// alone, so the pool's live devices can be listed and reconciled without any
// other state. Their tables reference the pool by major:minor, not by path.
//
// Concurrency: pool messages are serialised by a per-pool mutex (the kernel
// serialises them anyway, and the metadata snapshot used by ListThinIds must
// not interleave with a second one). Activation, deactivation and status
// queries take no lock. CreateSnap of an active origin additionally
// serialises with other CreateSnaps of the same origin, so that no origin is
// resumed while another snapshot of it is still being taken; the caller must
// not activate or deactivate the origin concurrently.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "pool/pool.h"

namespace thinsnap {

// Opens the existing thin-pool device `pool_name`. NotFound if no such dm
// device exists; FailedPrecondition if it is not a single thin-pool target;
// InvalidArgument if the name is too long to derive thin device names from.
Result<std::unique_ptr<ThinPool>> OpenDmPool(const std::string& pool_name);

}  // namespace thinsnap
