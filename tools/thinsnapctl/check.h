// `thinsnapctl check` and `thinsnapctl gc`: reconciliation on demand.
//
//   thinsnapctl check [--repair] [--json] [--no-discard] --root DIR --pool NAME
//   thinsnapctl gc [--no-discard] --root DIR --pool NAME
//
// Both open the instance's metadata (DIR/metadata.db) and its thin pool
// directly and run the same Reconciler as thinsnapd's start-up.
//   - `check` only reports: it changes neither the database nor the pool, so
//     it may run while thinsnapd serves (operations in flight then show up as
//     unfinished). It needs the pool's metadata snapshot for a moment, as
//     thin_ls does.
//   - `check --repair` repairs what start-up repairs, and also drops
//     snapshots whose thin device is gone (start-up refuses to run with them).
//   - `gc` repairs without dropping anything: it finishes deletes, undoes
//     unfinished creates and deletes orphan thin ids.
// Repairs take DIR/thinsnapd.lock, as thinsnapd does, and refuse to run while
// a daemon holds it.
//
// Exit status: 0 if clean or repaired cleanly, 1 if problems remain (or the
// check itself failed), 2 on usage errors.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace thinsnap::ctl {

class CheckCommands {
 public:
  // Registers `check` and `gc` on `app`. Must outlive app.parse().
  explicit CheckCommands(CLI::App& app);

  CheckCommands(const CheckCommands&) = delete;
  CheckCommands& operator=(const CheckCommands&) = delete;

  // True if the parsed command line chose `check` or `gc`.
  bool chosen() const { return *check_ || *gc_; }
  // Runs the chosen command and returns the exit status.
  int Run() const;

 private:
  CLI::App* check_;
  CLI::App* gc_;
  std::string root_, pool_;
  bool repair_ = false;
  bool json_ = false;
  bool no_discard_ = false;
};

}  // namespace thinsnap::ctl
