// Status and Result<T>: the error currency at every module boundary.
//
// A Status is either OK or carries a Code (which maps 1:1 onto a gRPC status
// code), a human-readable message, and, when the failure came from the kernel
// or libc, the errno that caused it. Errors never travel as exceptions across
// module boundaries.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace thinsnap {

enum class Code {
  kOk = 0,
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kInvalidArgument,
  kResourceExhausted,
  kUnavailable,
  kInternal,
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK

  static Status Ok() { return Status(); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status AlreadyExists(std::string msg) {
    return Status(Code::kAlreadyExists, std::move(msg));
  }
  static Status FailedPrecondition(std::string msg) {
    return Status(Code::kFailedPrecondition, std::move(msg));
  }
  static Status InvalidArgument(std::string msg) {
    return Status(Code::kInvalidArgument, std::move(msg));
  }
  static Status ResourceExhausted(std::string msg) {
    return Status(Code::kResourceExhausted, std::move(msg));
  }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status Internal(std::string msg) { return Status(Code::kInternal, std::move(msg)); }
  // A system-call failure: keeps errno and picks the closest Code
  // (ENOENT/ENXIO/ENODATA -> NotFound, EEXIST -> AlreadyExists,
  // ENOSPC -> ResourceExhausted, EBUSY/EAGAIN -> Unavailable, EINVAL -> InvalidArgument,
  // anything else -> Internal).
  static Status FromErrno(int err, std::string msg);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  int sys_errno() const { return errno_; }
  std::string ToString() const;

  // Prefixes the message with context, keeping code and errno.
  Status Annotate(const std::string& context) const;

 private:
  Status(Code code, std::string msg, int err = 0)
      : code_(code), message_(std::move(msg)), errno_(err) {}

  Code code_ = Code::kOk;
  std::string message_;
  int errno_ = 0;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must not be OK

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace thinsnap

// Returns early from the enclosing function when `expr` yields a non-OK Status.
#define THINSNAP_RETURN_IF_ERROR(expr) \
  do {                                 \
    ::thinsnap::Status _st = (expr);   \
    if (!_st.ok()) return _st;         \
  } while (0)
