// ferry's one error type for expected failures.
//
// A Status is ok or carries a Code chosen by what the caller should do about
// it, and a message meant for an operator (what is wrong, what to do).
// Functions that return a Status do not also log it: the caller decides.
// Exceptions are reserved for "should never happen"; third-party exceptions
// are caught at module boundaries and turned into a Status.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace ferry {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // bad user input: fix the flags / URI / file
  kNotFound,            // a named thing does not exist
  kFailedPrecondition,  // the system is not in a state that allows this
  kVersionConflict,     // store versions do not match the migration
  kLocked,              // another process holds it
  kUnavailable,         // transient: back off and retry
  kLeaseLost,           // fenced: stop writing for this range at once
  kPermanent,           // will fail the same way on every retry
  kInternal,            // a bug
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return Status(Code::kInvalidArgument, std::move(m));
}
inline Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
inline Status FailedPrecondition(std::string m) {
  return Status(Code::kFailedPrecondition, std::move(m));
}
inline Status VersionConflict(std::string m) {
  return Status(Code::kVersionConflict, std::move(m));
}
inline Status Locked(std::string m) { return Status(Code::kLocked, std::move(m)); }
inline Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
inline Status LeaseLost(std::string m) { return Status(Code::kLeaseLost, std::move(m)); }
inline Status Permanent(std::string m) { return Status(Code::kPermanent, std::move(m)); }
inline Status Internal(std::string m) { return Status(Code::kInternal, std::move(m)); }

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must not be ok

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
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

}  // namespace ferry

#define FERRY_RETURN_IF_ERROR(expr) \
  do {                              \
    ::ferry::Status _st = (expr);   \
    if (!_st.ok()) return _st;      \
  } while (0)

#define FERRY_CONCAT_INNER(a, b) a##b
#define FERRY_CONCAT(a, b) FERRY_CONCAT_INNER(a, b)
#define FERRY_ASSIGN_OR_RETURN(lhs, expr) \
  FERRY_ASSIGN_OR_RETURN_IMPL(FERRY_CONCAT(_res_, __LINE__), lhs, expr)
#define FERRY_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
