#include "daemon/root_dir.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

namespace thinsnap {

namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

}  // namespace

Result<std::unique_ptr<RootDirClaim>> RootDirClaim::Claim(const std::string& dir) {
  std::vector<std::string> created;
  // Every missing ancestor is ours to remove again, outermost first.
  std::filesystem::path missing = dir;
  std::vector<std::string> ancestors;
  while (!missing.empty() && missing != missing.root_path() && !Exists(missing.string())) {
    ancestors.insert(ancestors.begin(), missing.string());
    missing = missing.parent_path();
  }
  const auto undo = [&created] {
    for (auto it = created.rbegin(); it != created.rend(); ++it) {
      std::error_code ignored;
      std::filesystem::remove(*it, ignored);
    }
  };
  for (const std::string& path : ancestors) {
    if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
      Status error = Status::FromErrno(errno, "create root_dir " + path);
      undo();
      return error;
    }
    created.push_back(path);
  }
  // mkdir honours the umask; an existing directory is left as the
  // administrator made it.
  if (!ancestors.empty() && chmod(dir.c_str(), 0700) != 0) {
    Status error = Status::FromErrno(errno, "chmod " + dir);
    undo();
    return error;
  }
  const std::string lock_path = dir + "/thinsnapd.lock";
  const bool lock_existed = Exists(lock_path);
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    Status error = Status::FromErrno(errno, "open " + lock_path);
    undo();
    return error;
  }
  if (!lock_existed) created.push_back(lock_path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    Status error = errno == EWOULDBLOCK
                       ? Status::FailedPrecondition("another thinsnapd holds " + lock_path)
                       : Status::FromErrno(errno, "flock " + lock_path);
    close(fd);
    // The holder's lock file is not ours to remove, even if it appeared
    // between our check and our open.
    if (!lock_existed) created.pop_back();
    undo();
    return error;
  }
  return std::unique_ptr<RootDirClaim>(new RootDirClaim(fd, std::move(created)));
}

RootDirClaim::~RootDirClaim() { close(fd_); }

void RootDirClaim::NoteCreated(const std::string& path) {
  if (!Exists(path)) created_.push_back(path);
}

void RootDirClaim::Abandon() {
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    std::error_code ec;
    std::filesystem::remove(*it, ec);
    if (ec) spdlog::warn("could not remove {}: {}", *it, ec.message());
  }
  created_.clear();
}

}  // namespace thinsnap
