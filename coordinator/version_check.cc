#include "coordinator/version_check.h"

#include <fmt/format.h>

namespace ferry {

Status ValidateVersionFlags(int64_t from, int64_t to) {
  if (from < 0 || to < 0) return InvalidArgument("versions must be non-negative");
  if (from >= to) {
    return InvalidArgument(
        fmt::format("--from-version {} must be below --to-version {}", from, to));
  }
  return Status::Ok();
}

Result<VersionVerdict> CheckVersions(int64_t from, int64_t to, std::optional<int64_t> target,
                                     std::optional<int64_t> legacy) {
  if (target && *target == to) return VersionVerdict::kAlreadyDone;
  if (target && *target != from) {
    return VersionConflict(
        fmt::format("the new store is at version {}, but this migration goes from {} to {}: check "
                    "--target and --from-version/--to-version",
                    *target, from, to));
  }
  if (legacy && *legacy != from) {
    return VersionConflict(fmt::format(
        "the legacy store is at version {}, but this migration starts from version {}: check "
        "--source and --from-version",
        *legacy, from));
  }
  return VersionVerdict::kProceed;
}

}  // namespace ferry
