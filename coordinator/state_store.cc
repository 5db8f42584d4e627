#include "coordinator/state_store.h"

#include "coordinator/pg_state_store.h"
#include "coordinator/sqlite_state_store.h"

namespace ferry {

bool IsPgStateLocation(const std::string& location) {
  return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0;
}

Result<std::unique_ptr<StateStore>> OpenStateStore(const std::string& location, const Clock* clock,
                                                   int64_t ttl_ms) {
  if (IsPgStateLocation(location)) {
    FERRY_ASSIGN_OR_RETURN(std::unique_ptr<PgStateStore> s,
                           PgStateStore::Open(location, clock, ttl_ms));
    return std::unique_ptr<StateStore>(std::move(s));
  }
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStateStore> s,
                         SqliteStateStore::Open(location, clock));
  return std::unique_ptr<StateStore>(std::move(s));
}

Result<std::unique_ptr<StateReader>> OpenStateReader(const std::string& location) {
  if (IsPgStateLocation(location)) {
    FERRY_ASSIGN_OR_RETURN(std::unique_ptr<PgStateStore> s, PgStateStore::OpenReadOnly(location));
    return std::unique_ptr<StateReader>(std::move(s));
  }
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStateStore> s,
                         SqliteStateStore::OpenReadOnly(location));
  return std::unique_ptr<StateReader>(std::move(s));
}

}  // namespace ferry
