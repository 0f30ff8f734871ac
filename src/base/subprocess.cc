#include "base/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

extern char** environ;

namespace thinsnap {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Close(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  void Reset(int fd) {
    Close();
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read;
  Fd write;
};

// Both ends close-on-exec: the child only sees what posix_spawn dup2()s onto 0-2.
Status MakePipe(Pipe* p) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe2");
  p->read.Reset(fds[0]);
  p->write.Reset(fds[1]);
  return Status::Ok();
}

Status SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return Status::FromErrno(errno, "fcntl(O_NONBLOCK)");
  }
  return Status::Ok();
}

class SpawnFileActions {
 public:
  SpawnFileActions() { posix_spawn_file_actions_init(&fa_); }
  ~SpawnFileActions() { posix_spawn_file_actions_destroy(&fa_); }
  SpawnFileActions(const SpawnFileActions&) = delete;
  SpawnFileActions& operator=(const SpawnFileActions&) = delete;
  posix_spawn_file_actions_t* get() { return &fa_; }

 private:
  posix_spawn_file_actions_t fa_;
};

class SpawnAttr {
 public:
  SpawnAttr() { posix_spawnattr_init(&attr_); }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr_); }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
  posix_spawnattr_t* get() { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

// Writing to a pipe whose reader has exited raises SIGPIPE, whose default
// action would kill the whole daemon. While alive, this blocks SIGPIPE in the
// calling thread (SIGPIPE is thread-directed), and on destruction discards a
// SIGPIPE that our own writes left pending, so EPIPE is all the caller sees.
class SigPipeGuard {
 public:
  SigPipeGuard() {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_mask_);
  }
  ~SigPipeGuard() {
    if (got_epipe_ && !was_pending_) {
      const timespec zero{};
      while (sigtimedwait(&pipe_set_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  SigPipeGuard(const SigPipeGuard&) = delete;
  SigPipeGuard& operator=(const SigPipeGuard&) = delete;
  void NoteEpipe() { got_epipe_ = true; }

 private:
  sigset_t pipe_set_;
  sigset_t old_mask_;
  bool was_pending_ = false;
  bool got_epipe_ = false;
};

std::string CommandLine(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

// The inherited environment with `extra` applied; an extra NAME=value replaces
// an inherited NAME because getenv() would otherwise return the first match.
std::vector<std::string> BuildEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  for (const auto& kv : extra) {
    const std::string prefix = kv.substr(0, kv.find('=') + 1);
    std::erase_if(env, [&](const std::string& e) { return e.starts_with(prefix); });
    env.push_back(kv);
  }
  return env;
}

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

int DecodeWaitStatus(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return -1;
}

// Kills the child's process group (so grandchildren die too) and reaps it.
void KillAndReap(pid_t pid) {
  kill(-pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// Milliseconds left until `deadline` for poll(), or -1 when there is none.
int PollTimeout(const std::optional<Clock::time_point>& deadline) {
  if (!deadline) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Reads whatever `fd` has into `sink`; closes `fd` at EOF.
Status Drain(Fd* fd, std::string* sink) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd->get(), buf, sizeof(buf));
    if (n > 0) {
      sink->append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      fd->Close();
      return Status::Ok();
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return Status::Ok();
    return Status::FromErrno(errno, "read from child");
  }
}

}  // namespace

Result<CommandOutput> RunCommand(const std::vector<std::string>& argv, const RunOptions& opts) {
  if (argv.empty() || argv[0].empty()) return Status::InvalidArgument("RunCommand: empty argv");
  const std::string what = argv[0];

  Pipe in, out, err;
  THINSNAP_RETURN_IF_ERROR(MakePipe(&in));
  THINSNAP_RETURN_IF_ERROR(MakePipe(&out));
  THINSNAP_RETURN_IF_ERROR(MakePipe(&err));

  SpawnFileActions fa;
  // dup2 clears close-on-exec on the target; closefrom drops every other fd
  // the daemon may have open without O_CLOEXEC (another thread's, a library's).
  if (posix_spawn_file_actions_adddup2(fa.get(), in.read.get(), 0) != 0 ||
      posix_spawn_file_actions_adddup2(fa.get(), out.write.get(), 1) != 0 ||
      posix_spawn_file_actions_adddup2(fa.get(), err.write.get(), 2) != 0 ||
      posix_spawn_file_actions_addclosefrom_np(fa.get(), 3) != 0) {
    return Status::Internal("posix_spawn_file_actions setup failed");
  }

  SpawnAttr attr;
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  // Our own SIGPIPE block and any ignored signals must not leak into the child.
  if (posix_spawnattr_setflags(attr.get(), POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                               POSIX_SPAWN_SETPGROUP) != 0 ||
      posix_spawnattr_setsigmask(attr.get(), &empty) != 0 ||
      posix_spawnattr_setsigdefault(attr.get(), &all) != 0 ||
      posix_spawnattr_setpgroup(attr.get(), 0) != 0) {
    return Status::Internal("posix_spawnattr setup failed");
  }

  const std::vector<std::string> env = BuildEnv(opts.extra_env);
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_env = CStrings(env);

  SigPipeGuard sigpipe_guard;
  pid_t pid = -1;
  // glibc's posix_spawnp reports exec failures (e.g. ENOENT) as its return value.
  int rc = posix_spawnp(&pid, what.c_str(), fa.get(), attr.get(), c_argv.data(), c_env.data());
  if (rc != 0) {
    if (rc == ENOENT) return Status::NotFound("command not found: " + what);
    return Status::FromErrno(rc, "spawn " + what);
  }
  in.read.Close();
  out.write.Close();
  err.write.Close();

  std::optional<Clock::time_point> deadline;
  if (opts.timeout.count() > 0) deadline = Clock::now() + opts.timeout;
  auto fail = [&](Status s) -> Result<CommandOutput> {
    KillAndReap(pid);
    return s;
  };

  CommandOutput result;
  size_t written = 0;
  if (opts.stdin_data.empty()) in.write.Close();
  for (Fd* fd : {&in.write, &out.read, &err.read}) {
    if (fd->valid()) {
      if (Status s = SetNonBlocking(fd->get()); !s.ok()) return fail(s);
    }
  }

  while (in.write.valid() || out.read.valid() || err.read.valid()) {
    pollfd pfds[3];
    int n = 0;
    auto add = [&](const Fd& fd, short events) {
      pfds[n++] = pollfd{fd.valid() ? fd.get() : -1, events, 0};
    };
    add(in.write, POLLOUT);
    add(out.read, POLLIN);
    add(err.read, POLLIN);
    int ready = poll(pfds, n, PollTimeout(deadline));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return fail(Status::FromErrno(errno, "poll"));
    }
    if (ready == 0) {
      return fail(Status::Unavailable(what + " timed out after " +
                                      std::to_string(opts.timeout.count()) + " ms"));
    }
    if (pfds[0].revents != 0) {
      ssize_t w =
          write(in.write.get(), opts.stdin_data.data() + written, opts.stdin_data.size() - written);
      if (w > 0) {
        written += static_cast<size_t>(w);
        if (written == opts.stdin_data.size()) in.write.Close();
      } else if (w < 0 && errno == EPIPE) {
        // The child stopped reading; that is its business, not an error.
        sigpipe_guard.NoteEpipe();
        in.write.Close();
      } else if (w < 0 && errno != EINTR && errno != EAGAIN) {
        return fail(Status::FromErrno(errno, "write to " + what));
      }
    }
    if (pfds[1].revents != 0) {
      if (Status s = Drain(&out.read, &result.out); !s.ok()) return fail(s);
    }
    if (pfds[2].revents != 0) {
      if (Status s = Drain(&err.read, &result.err); !s.ok()) return fail(s);
    }
  }

  // Output is complete; the child may still be running (it could close its
  // stdout early), so keep honouring the deadline while reaping it.
  int wstatus = 0;
  for (auto nap = std::chrono::milliseconds(1);;) {
    pid_t r = waitpid(pid, &wstatus, deadline ? WNOHANG : 0);
    if (r == pid) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "waitpid " + what);
    }
    if (Clock::now() >= *deadline) {
      return fail(Status::Unavailable(what + " timed out after " +
                                      std::to_string(opts.timeout.count()) + " ms"));
    }
    const timespec ts{0, static_cast<long>(std::chrono::nanoseconds(nap).count())};
    nanosleep(&ts, nullptr);
    nap = std::min(nap * 2, std::chrono::milliseconds(20));
  }
  result.exit_code = DecodeWaitStatus(wstatus);
  return result;
}

Status RunChecked(const std::vector<std::string>& argv, const RunOptions& opts) {
  Result<CommandOutput> r = RunCommand(argv, opts);
  if (!r.ok()) return r.status();
  if (r->exit_code == 0) return Status::Ok();
  constexpr size_t kTail = 1024;
  std::string tail = r->err.size() > kTail ? r->err.substr(r->err.size() - kTail) : r->err;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
  return Status::Internal("`" + CommandLine(argv) + "` exited with " +
                          std::to_string(r->exit_code) + (tail.empty() ? "" : ": " + tail));
}

}  // namespace thinsnap
