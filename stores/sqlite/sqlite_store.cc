// SqliteStore's connection core: opening a file as a source or a target, the
// state the targets of one process share per file, the statement cache.
#include "stores/sqlite/sqlite_store.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <utility>

#include "common/mutex.h"
#include "stores/sql_text.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {

namespace fs = std::filesystem;

std::shared_ptr<SqliteStore::SharedFile> SqliteStore::Shared(const std::string& path) {
  // The SharedFile of every SQLite file this process has target stores on.
  struct Registry {
    Mutex mu;
    std::map<std::string, std::weak_ptr<SharedFile>> files GUARDED_BY(mu);
  };
  static Registry registry;
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(path, ec);
  const std::string key = ec ? path : canonical.string();
  MutexLock lock(&registry.mu);
  for (auto it = registry.files.begin(); it != registry.files.end();) {
    it = it->second.expired() ? registry.files.erase(it) : std::next(it);
  }
  std::shared_ptr<SharedFile> shared = registry.files[key].lock();
  if (!shared) {
    shared = std::make_shared<SharedFile>(path);
    registry.files[key] = shared;
  }
  return shared;
}

// ---- open ----

SqliteStore::SqliteStore(std::string path, StoreRole role, Db db)
    : path_(std::move(path)), role_(role), db_(std::move(db)) {}

SqliteStore::~SqliteStore() {
  stmts_.clear();  // finalize statements before the connection closes
}

std::string SqliteStore::Describe() const { return "sqlite:" + path_; }

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path, StoreRole role) {
  const bool source = role == StoreRole::kSource;
  const std::string what = fmt::format("{} store sqlite:{}", source ? "legacy" : "new", path);
  const char* flag = source ? "--source" : "--target";
  if (path.empty()) return InvalidArgument(fmt::format("{}: empty path (check {})", what, flag));

  struct stat st;
  bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) {
    return InvalidArgument(
        fmt::format("{} is a directory, not a SQLite file (check {})", what, flag));
  }
  if (source) {
    if (!exists) return InvalidArgument(fmt::format("{} does not exist (check {})", what, flag));
    if (::access(path.c_str(), R_OK) != 0) {
      return InvalidArgument(
          fmt::format("{} is not readable: {} (check {} and the file's permissions)", what,
                      std::strerror(errno), flag));
    }
  }

  if (!source && !exists) {
    std::string dir = fs::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    struct stat dir_st;
    int err = 0;
    if (::stat(dir.c_str(), &dir_st) != 0) {
      err = errno;
    } else if (!S_ISDIR(dir_st.st_mode)) {
      err = ENOTDIR;
    } else if (::access(dir.c_str(), W_OK | X_OK) != 0) {
      err = errno;
    }
    if (err != 0) {
      return InvalidArgument(fmt::format(
          "{} cannot be created: directory {}: {} (check {}: the directory must exist and be "
          "writable)",
          what, dir, std::strerror(err), flag));
    }
  }

  // Targets accept URI file names so that CanCopyFrom can ATTACH the source
  // read-only; a path that itself starts with "file:" is opened as ./file:...
  int flags = source ? SQLITE_OPEN_READONLY
                     : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI);
  const std::string open_path = !source && path.rfind("file:", 0) == 0 ? "./" + path : path;
  auto db = Db::Open(open_path, flags);
  if (!db.ok()) {
    const std::string& m = db.status().message();
    size_t colon = m.rfind(": ");
    return InvalidArgument(fmt::format("{} cannot be opened: {} (check {})", what,
                                       colon == std::string::npos ? m : m.substr(colon + 2), flag));
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(path, role, std::move(db).value()));
  if (!source) {
    store->shared_ = Shared(open_path);
    store->shared_->checkpointer.Attach(store->db_.get());
  }
  // Turns a failure of the first statements into a one-line, actionable error.
  auto open_error = [&](const Status& s) -> Status {
    const std::string cause = store->db_.ErrorMessage();
    const int code = sqlite3_errcode(store->db_.get()) & 0xff;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
      return Unavailable(
          fmt::format("{} is locked by another process ({}); retry, or stop the process holding it",
                      what, cause));
    }
    if (code == SQLITE_NOTADB || s.code() == Code::kPermanent) {
      return InvalidArgument(
          fmt::format("{} is not a SQLite database ({}) (check {})", what, cause, flag));
    }
    if (source) {
      return InvalidArgument(fmt::format("{} cannot be read: {} (check {})", what, cause, flag));
    }
    return InvalidArgument(fmt::format(
        "{} cannot be written: {} (check {}: the file and its directory must be writable)", what,
        cause, flag));
  };
  if (source) {
    // Touches the file so a non-database fails here, not mid-plan.
    Status s = store->db_.Exec("SELECT count(*) FROM sqlite_master");
    if (!s.ok()) return open_error(s);
    return store;
  }

  auto mode = store->db_.Prepare("PRAGMA journal_mode=WAL");
  if (!mode.ok()) return open_error(mode.status());
  int rc = mode->Step();
  if (rc != SQLITE_ROW) return open_error(store->db_.Error(rc, "PRAGMA journal_mode=WAL"));
  std::string got = mode->Str(0);
  mode->Reset();
  if (sqlite3_db_readonly(store->db_.get(), "main") == 1) {
    return InvalidArgument(fmt::format(
        "{} is read-only (check {}: the file and its directory must be writable)", what, flag));
  }
  if (!IEquals(got, "wal")) {
    return InvalidArgument(
        fmt::format("{} cannot use WAL journal mode (it stays '{}'); use a regular file (check {})",
                    what, got, flag));
  }
  Status s = store->db_.Exec("PRAGMA synchronous=NORMAL");
  if (!s.ok()) return open_error(s);
  {
    Txn txn(store.get());
    if (!txn.status().ok()) return open_error(txn.status());
    s = store->CreateMetaTable();
    if (s.ok()) s = txn.Commit();
    if (!s.ok()) return open_error(s);
  }
  return store;
}

Status SqliteStore::RefuseWrite() const {
  return FailedPrecondition(fmt::format(
      "{} is opened as the legacy store (read-only); ferry never writes to it", Describe()));
}

// ---- statement cache ----

Result<Stmt*> SqliteStore::Cached(const std::string& sql) {
  auto it = stmts_.find(sql);
  if (it != stmts_.end()) return &it->second;
  FERRY_ASSIGN_OR_RETURN(Stmt stmt, db_.Prepare(sql));
  return &stmts_.emplace(sql, std::move(stmt)).first->second;
}

}  // namespace ferry
