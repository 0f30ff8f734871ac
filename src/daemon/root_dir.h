// RootDirClaim: thinsnapd's hold on its root_dir for the life of the process.
//
// Claim creates the directory (0700, with parents) if it is missing and takes
// an exclusive flock on <root_dir>/thinsnapd.lock, so that a second daemon
// cannot reconcile the same pool and database behind the first one's back.
// The lock lives as long as the claim.
//
// A start that fails must leave root_dir as it found it. The claim remembers
// what it created (the directory, the lock file) and what the caller tells
// it about (NoteCreated: metadata.db and SQLite's side files when the
// database is new); Abandon() removes exactly those, still under the lock.
// A successful start calls Keep() and nothing is ever removed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace thinsnap {

class RootDirClaim {
 public:
  static Result<std::unique_ptr<RootDirClaim>> Claim(const std::string& dir);
  // Releases the lock; removes nothing unless Abandon() was called.
  ~RootDirClaim();

  RootDirClaim(const RootDirClaim&) = delete;
  RootDirClaim& operator=(const RootDirClaim&) = delete;

  // Records that `path` (inside the directory) is about to be created by
  // this start, if it does not exist yet.
  void NoteCreated(const std::string& path);
  // Removes what this start created, newest first.
  void Abandon();
  // The start succeeded: forget the list.
  void Keep() { created_.clear(); }

 private:
  RootDirClaim(int fd, std::vector<std::string> created) : fd_(fd), created_(std::move(created)) {}

  const int fd_;
  std::vector<std::string> created_;  // oldest first; directories included
};

}  // namespace thinsnap
