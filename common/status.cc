#include "common/status.h"

namespace ferry {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kInvalidArgument:
      return "invalid argument";
    case Code::kNotFound:
      return "not found";
    case Code::kFailedPrecondition:
      return "failed precondition";
    case Code::kVersionConflict:
      return "version conflict";
    case Code::kLocked:
      return "locked";
    case Code::kUnavailable:
      return "unavailable";
    case Code::kLeaseLost:
      return "lease lost";
    case Code::kPermanent:
      return "permanent failure";
    case Code::kInternal:
      return "internal error";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace ferry
