// The version rules (DESIGN.md "Versions"): a migration goes from S to T.
//   new store at T                -> nothing to do (idempotent re-run)
//   new store at S or absent      -> proceed, if the legacy store's version,
//                                    when present, is S
//   anything else                 -> refuse, naming both numbers
#pragma once

#include <cstdint>
#include <optional>

#include "common/status.h"

namespace ferry {

enum class VersionVerdict { kProceed, kAlreadyDone };

Status ValidateVersionFlags(int64_t from, int64_t to);

Result<VersionVerdict> CheckVersions(int64_t from, int64_t to, std::optional<int64_t> target,
                                     std::optional<int64_t> legacy);

}  // namespace ferry
