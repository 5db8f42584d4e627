// WalCheckpointer: keeps WAL checkpoints of a SQLite file off its writer's
// commit path.
//
// SQLite's automatic checkpoint runs inside the COMMIT that crosses 1000 WAL
// frames, so one commit in a few hundred takes milliseconds to tens of
// milliseconds longer (copying pages into the database file and fsyncing
// it). Attach() replaces that hook on the writer's connection: after each
// commit that leaves the WAL at `frames` or more, a private thread with its
// own connection runs a PASSIVE checkpoint (no waiting on readers or
// writers) while the writer goes on. If the WAL still reaches
// `restart_frames` (the writer never pauses long enough for a checkpoint to
// finish), the committing connection runs a RESTART checkpoint itself, so
// the next writer starts the log over and the file stays bounded.
//
// Thread safety: Attach() once, from the writer's thread, before its first
// commit; the hook runs on the writer's thread; everything else is
// internal. The destructor stops and joins the thread; destroy it after the
// writer's connection is closed or no longer commits.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "common/mutex.h"

namespace ferry {

class WalCheckpointer {
 public:
  explicit WalCheckpointer(std::string path, int frames = 1000, int restart_frames = 16384);
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Installs the hook on `db`, the writer's connection to `path`.
  void Attach(sqlite3* db);

  // PASSIVE checkpoints run so far by the thread that copied at least one
  // frame into the database file; RESTART checkpoints run by the writer.
  uint64_t passive_checkpoints() const { return passive_.load(); }
  uint64_t restart_checkpoints() const { return restart_.load(); }

 private:
  static int Hook(void* self, sqlite3* db, const char* schema, int frames);
  void Run();

  const std::string path_;
  const int frames_;
  const int restart_frames_;
  Mutex mu_;
  CondVar cv_;
  bool due_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> passive_{0}, restart_{0};
  std::thread thread_;
};

}  // namespace ferry
