// RunCommand: runs an external program from an argv vector and collects its output.
//
// There is deliberately no shell: argv[0] is looked up in PATH and every
// argument reaches the program verbatim, so device names or labels can never
// be interpreted as shell syntax.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "base/status.h"

namespace thinsnap {

struct CommandOutput {
  // The program's exit status, or 128 + signal number when a signal killed it
  // (the shell's convention, so callers need only one integer).
  int exit_code = 0;
  std::string out;
  std::string err;
};

struct RunOptions {
  // Kill the command (and its process group) after this long; 0 = no limit.
  std::chrono::milliseconds timeout{0};
  // NAME=value entries appended to the inherited environment (later ones win).
  std::vector<std::string> extra_env;
  // Written to the command's stdin, which is then closed. Empty = immediate EOF.
  std::string stdin_data;
};

// Runs argv[0] (searched in PATH) with the given arguments and waits for it.
// The child runs in its own process group, with default signal dispositions,
// an empty signal mask and only fds 0-2 open.
// A non-zero exit is NOT an error here: inspect exit_code. Errors are:
// InvalidArgument (empty argv), NotFound (program missing), Unavailable
// (timed out; the child was killed), or the errno-derived Status of a failed
// system call.
Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, const RunOptions& opts = {});

// RunCommand, but an exit code other than 0 becomes Internal carrying the
// command line, the exit code and the tail of its stderr.
Status RunChecked(const std::vector<std::string>& argv, const RunOptions& opts = {});

}  // namespace thinsnap
