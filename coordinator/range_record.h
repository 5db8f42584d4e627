// The coordinator's records: a planned range and the job it belongs to.
// Plain data; persisted by StateStore, mutated by LeaseTable.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ferry {

// pending -> leased(epoch, owner, deadline, cursor) -> done(rows, bytes, digest)
// leased -> pending on expiry, release or revoke (cursor kept);
// leased -> failed on a permanent error or too many attempts.
// With --verify a done range is leased again for verification (a verify
// lease: `verify_lease`, its own epoch, owner, deadline and verify_cursor):
// done -> leased(verify) -> done(verified), or back to done (unverified,
// verify_cursor kept) on expiry, release or revoke.
enum class RangeState { kPending = 0, kLeased = 1, kDone = 2, kFailed = 3 };

const char* RangeStateName(RangeState s);
std::optional<RangeState> ParseRangeState(const std::string& s);

struct RangeRecord {
  // 1..n: planned ranges in key order (table name, then key), then the
  // tails of splits in the order they were made. Key order is kept by
  // LeaseTable, not by ids.
  uint64_t id = 0;
  std::string table;
  std::string lo;  // encoded, inclusive; empty = table start
  std::string hi;  // encoded, exclusive; empty = table end
  uint64_t est_rows = 0;
  RangeState state = RangeState::kPending;
  std::string owner;
  uint64_t epoch = 0;       // fencing token of the latest grant
  int64_t deadline_ms = 0;  // lease deadline (wall clock), while leased
  std::string cursor;       // encoded key of the last committed row; empty = none
  uint64_t rows = 0;        // rows copied up to the cursor (final when done)
  uint64_t bytes = 0;
  uint64_t digest = 0;    // chained digest up to the cursor (common/digest.h)
  uint64_t rejected = 0;  // rows up to the cursor a migration spec could not move
  uint32_t attempts = 0;  // grants so far
  uint32_t errors = 0;    // copy errors reported so far
  std::string last_error;
  // Splitting: the range this one's tail was split off (0: planned). A
  // split keeps the head [lo, key) under the owner's epoch (hi and est_rows
  // change) and makes the tail [key, hi) a new pending range.
  uint64_t parent = 0;
  bool split_head = false;  // some range was split off this one (derived on load)
  // Verification (--verify).
  bool verified = false;      // compared (and repaired) after its copy
  bool verify_lease = false;  // the current lease (state leased) verifies
  std::string verify_cursor;  // last key verified; empty = none
  uint64_t rows_repaired = 0;
  // Not persisted: when the current lease was granted and the rows done
  // then (the split policy's rate), and a split asked of the owner.
  int64_t granted_ms = 0;
  uint64_t rows_at_grant = 0;
  int64_t split_asked_ms = 0;  // 0 = none outstanding
  uint64_t split_keep = 0;     // rows after the cursor the owner should keep
  uint64_t split_left = 0;     // rows left (est_rows - rows) when it was asked
  // Stall tracking (not persisted; restarts from zero on Load): a range is
  // stalled once it has been leased for stall time without its cursor
  // moving, counted across re-grants, so a range that fails on every lease
  // (a full disk) or whose owners keep expiring is still reported.
  int64_t progress_ms = 0;             // when the current stretch without progress began
  int64_t idle_leased_ms = 0;          // leased time without progress in earlier leases
  uint32_t errors_since_progress = 0;  // errors of any kind since the cursor moved

  // Leased time without the cursor moving, as of `now`.
  int64_t StalledForMs(int64_t now) const {
    return idle_leased_ms + (state == RangeState::kLeased ? now - progress_ms : 0);
  }
};

// Job-level phase, persisted. Online mode (DESIGN.md "Online mode") adds
// catching_up (every range copied, changes replayed) and cutting_over
// (a cut-over in progress); an offline job never enters them.
enum class JobPhase { kCopying = 0, kComplete = 1, kFailed = 2, kCatchingUp = 3, kCuttingOver = 4 };

struct JobMeta {
  std::string source_uri;  // as given (may hold credentials: never printed)
  std::string target_uri;
  int64_t from_version = 1;
  int64_t to_version = 2;
  std::string tables;  // the --tables selection, "" = all
  std::string plan_id;
  uint64_t last_epoch = 0;
  JobPhase phase = JobPhase::kCopying;
  std::string boundary;  // "table\0key"; empty = none
  std::optional<int64_t> current_version;
  bool paused = false;
  uint64_t throttle_rows_per_s = 0;  // 0 = off
  std::string failure;
  bool mirrored = false;  // the last phase/boundary reached the target store
  // The migration spec the plan was made with (spec/migration_spec.h):
  // its canonical TOML text and digest; both empty without --spec.
  std::string spec_text;
  std::string spec_digest;
  // --verify: every range is verified (and repaired) before the version bump.
  bool verify = false;
};

}  // namespace ferry
