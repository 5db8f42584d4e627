// OpenChangeCapture and GuardMessage (stores/change_capture.h).
#include "stores/change_capture.h"

#include <fmt/format.h>

#include "stores/postgresql/pg_capture.h"
#include "stores/sqlite/sqlite_capture.h"

namespace ferry {

std::string GuardMessage(const std::string& table, const std::string& target_redacted) {
  return fmt::format("ferry: table {} has moved to {}; write there", table, target_redacted);
}

Result<std::unique_ptr<ChangeCapture>> OpenChangeCapture(const std::string& uri) {
  if (uri.rfind("sqlite:", 0) == 0) {
    std::string path = uri.substr(7);
    if (path.rfind("//", 0) == 0) path = path.substr(2);
    if (path.empty()) {
      return InvalidArgument(fmt::format("store URI '{}' has no path: use sqlite:PATH", uri));
    }
    FERRY_ASSIGN_OR_RETURN(std::unique_ptr<SqliteCapture> c, SqliteCapture::Open(path));
    return std::unique_ptr<ChangeCapture>(std::move(c));
  }
  if (uri.rfind("postgresql://", 0) == 0 || uri.rfind("postgres://", 0) == 0) {
    FERRY_ASSIGN_OR_RETURN(std::unique_ptr<PgCapture> c, PgCapture::Open(uri));
    return std::unique_ptr<ChangeCapture>(std::move(c));
  }
  return InvalidArgument(fmt::format(
      "unknown store URI scheme in '{}': use sqlite:PATH or postgresql://...", RedactUri(uri)));
}

}  // namespace ferry
