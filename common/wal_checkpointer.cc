#include "common/wal_checkpointer.h"

#include <optional>
#include <utility>

#include "common/sqlite_util.h"

namespace ferry {

WalCheckpointer::WalCheckpointer(std::string path, int frames, int restart_frames)
    : path_(std::move(path)), frames_(frames), restart_frames_(restart_frames) {
  thread_ = std::thread([this] { Run(); });
}

WalCheckpointer::~WalCheckpointer() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.Signal();
  thread_.join();
}

void WalCheckpointer::Attach(sqlite3* db) { sqlite3_wal_hook(db, &WalCheckpointer::Hook, this); }

int WalCheckpointer::Hook(void* self, sqlite3* db, const char* schema, int frames) {
  auto* c = static_cast<WalCheckpointer*>(self);
  if (frames >= c->restart_frames_) {
    if (sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr) ==
        SQLITE_OK) {
      c->restart_++;
    }
    return SQLITE_OK;
  }
  if (frames >= c->frames_) {
    {
      MutexLock lock(&c->mu_);
      c->due_ = true;
    }
    c->cv_.Signal();
  }
  return SQLITE_OK;
}

void WalCheckpointer::Run() {
  std::optional<Db> db;  // opened at the first checkpoint; retried if that fails
  for (;;) {
    {
      MutexLock lock(&mu_);
      while (!due_ && !stop_) cv_.Wait(&mu_);
      if (stop_) break;
      due_ = false;
    }
    if (!db) {
      // PASSIVE checkpoints never wait on a lock, so no busy timeout.
      Result<Db> opened = Db::Open(path_, SQLITE_OPEN_READWRITE, /*busy_timeout_ms=*/0);
      // A connection learns that the file is in WAL mode (and opens the
      // WAL) only when it first reads it: until then a checkpoint on it
      // returns SQLITE_OK having done nothing (log and checkpointed -1).
      if (opened.ok() && opened->Exec("SELECT 1 FROM sqlite_master LIMIT 1").ok()) {
        db.emplace(std::move(opened).value());
      }
    }
    int log = -1, checkpointed = -1;
    if (db &&
        sqlite3_wal_checkpoint_v2(db->get(), "main", SQLITE_CHECKPOINT_PASSIVE, &log,
                                  &checkpointed) == SQLITE_OK &&
        checkpointed > 0) {
      passive_++;
    }
  }
}

}  // namespace ferry
