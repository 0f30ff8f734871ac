// `thinsnapctl usage --exact [KEY] --root DIR --pool NAME`: what each
// snapshot holds on its own, exactly, from the pool's metadata.
//
// The Usage RPC answers from the thin device's mapped-sector count (fast, but
// an estimate: it counts the blocks a layer maps beyond what its parent
// mapped when committed). This reads the pool's metadata instead (thin_ls on
// a held metadata snapshot, safe while thinsnapd serves): EXCLUSIVE is the
// space that removing the snapshot would free, MAPPED everything it maps,
// shared blocks included. It costs a full metadata read, so it is for
// administrators, not for containerd.
#pragma once

#include <optional>
#include <string>

namespace thinsnap::ctl {

// Prints the table (or JSON) and returns the exit status.
int ExactUsage(const std::string& root, const std::string& pool,
               const std::optional<std::string>& key, bool json);

}  // namespace thinsnap::ctl
