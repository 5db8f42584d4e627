// LeaseTable: the range state machine, in memory, with an injected clock.
//
//   pending -> leased(epoch, owner, deadline, cursor) -> done(rows, bytes, digest)
//   leased  -> pending   on expiry, release or revoke (cursor kept)
//   leased  -> failed    on a permanent error, or after max_attempts
// With verification on (set_verify), a done range is leased again to be
// verified (a verify lease: RangeRecord::verify_lease, a new epoch):
//   done    -> leased(verify) -> done(verified)
//   leased(verify) -> done (unverified, verify_cursor kept) on expiry,
//                     release, revoke or a transient error
//
// Every grant takes a new, strictly increasing epoch (the fencing token).
// Heartbeat, release, completion and error reports carry (range, epoch,
// owner); any mismatch returns kLeaseLost and changes nothing.
//
// Splitting: Split() cuts a leased copy range at a key beyond its cursor;
// the head keeps its id, owner and epoch and ends at the key, the tail is a
// new pending range (the next id, `parent` = the head). A report of the
// head whose cursor is at or past its new end (an owner that wrote past the
// split) revokes the lease.
//
// Key order: ids are 1..n, but the tails of splits take the next ids, so key
// order (tables in the order of their lowest id, then lo) is an index of its
// own (order()). The boundary is the end of the longest prefix of copied
// ranges (done, or leased for verification) in key order.
//
// Per-message and per-loop-pass work is proportional to what changed, not to
// the number of ranges: leased ranges are indexed by (deadline, id) so
// NextDeadlineMs() is O(1) and ExpireDue() O(expired * log leased); the done
// prefix only moves forward (amortised O(1) per completion); row and byte
// totals are kept as running sums. A split rebuilds the key-order indexes
// (O(n log n); splits are rare: one per idle worker at the end of a job).
//
// Every mutation marks the range dirty (a split's tail is "inserted"); the
// coordinator persists the dirty and inserted ranges and job meta in one
// state transaction, and on a failed commit reloads the table from the state
// file (nothing is advanced that was not committed).
//
// Thread safety: owned by the coordinator's event-loop thread.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "coordinator/messages.h"
#include "coordinator/range_record.h"

namespace ferry {

class LeaseTable {
 public:
  LeaseTable(const Clock* clock, int64_t ttl_ms, uint32_t max_attempts = 3);

  // Replaces the contents. `ranges` must have ids 1..n in id order (key
  // order is derived). `last_epoch` is the highest epoch ever granted.
  void Load(std::vector<RangeRecord> ranges, uint64_t last_epoch);

  int64_t ttl_ms() const { return ttl_ms_; }

  // Verification on: done ranges not yet verified are granted as verify
  // leases (to callers of Grant that may verify) before pending copies.
  void set_verify(bool on);
  bool verify() const { return verify_; }

  // Leases a pending range to `worker`; nullptr if none. The first pending
  // range (key order) of a table none of whose ranges is leased, if there is
  // one; else the first pending range. So while there are tables enough,
  // concurrent workers copy different tables, and each table fills in key
  // order, appending at the end of its B-trees instead of into the middle of
  // a neighbour's range (2 workers on one SQLite file: 1.37-1.47 s instead
  // of 1.47-1.55 s). O(log n).
  // With verification on and `may_verify`, a done range not yet verified
  // (key order) comes first, leased for verification.
  const RangeRecord* Grant(const std::string& worker, bool may_verify = false);

  // Renews the lease and records progress.
  Status Heartbeat(uint64_t range, uint64_t epoch, const std::string& worker, const Progress& p);
  // Marks the range done with its final counters. A repeat with the same
  // epoch of an already-done range is accepted (idempotent) and changes nothing.
  Status Complete(uint64_t range, uint64_t epoch, const std::string& worker, const Progress& p);
  // Gives the range back (pending, cursor kept).
  Status Release(uint64_t range, uint64_t epoch, const std::string& worker, const Progress& p);
  // A worker could not copy the range: back to pending with the error
  // recorded; the max_attempts-th error classified permanent fails it.
  Status ReportError(uint64_t range, uint64_t epoch, const std::string& worker, bool permanent,
                     const std::string& message);
  // Operator revoke: leased -> pending now (a verify lease: -> done,
  // unverified); its epoch is fenced by the next grant.
  Status Revoke(uint64_t range);

  // Splits the copy lease (range, epoch, worker) at `key`: the head keeps
  // [lo, key) and about `keep_rows` rows after its cursor, the tail [key,
  // hi) becomes a new pending range. Returns the tail. kLeaseLost on a lease
  // mismatch; kInvalidArgument unless cursor < key (lo < key when nothing
  // was copied yet) and key < hi, or for a verify lease. A repeat of a
  // committed split (the same key, the range already ends there) returns
  // the existing tail. A committed split ends the head's ask and its
  // cool-down.
  Result<const RangeRecord*> Split(uint64_t range, uint64_t epoch, const std::string& worker,
                                   std::string_view key, uint64_t keep_rows);

  // Split asks (in memory only): the owner of leased copy range `id` is
  // asked (in its next acks) to propose a split keeping `keep_rows` rows
  // after its cursor (scaled down in each ack by the rows done since); the
  // ask starts the cool-down. ClearSplitAsk stops asking (keeps the
  // cool-down).
  void AskSplit(uint64_t id, uint64_t keep_rows);
  void ClearSplitAsk(uint64_t id);

  // Leased ranges whose deadline has passed (deadline <= now) go back to
  // pending. Returns (range, previous owner, epoch) of each, earliest
  // deadline first (ties by id). Deadlines more than one TTL ahead (the wall
  // clock stepped back) are brought back to now + TTL (marked dirty).
  // O(changed * log leased).
  struct Expired {
    uint64_t range;
    std::string owner;
    uint64_t epoch;
  };
  std::vector<Expired> ExpireDue();
  // Failed ranges go back to pending with their error count cleared
  // (operator asked to retry them). Returns how many.
  size_t RetryFailed();
  // Earliest lease deadline, or INT64_MAX if nothing is leased. O(1).
  int64_t NextDeadlineMs() const;

  // A new epoch without a range: the online change applier's lease
  // (coordinator/applier_lease.h), later than every range grant so far.
  uint64_t TakeEpoch() { return ++last_epoch_; }

  const RangeRecord* Find(uint64_t id) const;
  // In id order (see order() for key order).
  const std::vector<RangeRecord>& ranges() const { return ranges_; }
  // Ids in key order.
  const std::vector<uint64_t>& order() const { return order_; }
  uint64_t last_epoch() const { return last_epoch_; }

  // Number of ranges (key order) in the copied prefix; == size() when all
  // are copied.
  size_t done_prefix() const { return done_prefix_; }
  // Encoded boundary "table\0key" at the end of the done prefix; empty when
  // nothing is done or everything is.
  std::string Boundary() const;
  // Every range is done (copied, no lease of any kind held).
  bool AllDone() const { return count(RangeState::kDone) == ranges_.size(); }
  // Every range copied (done, or leased for verification).
  bool AllCopied() const { return done_prefix_ == ranges_.size() && !ranges_.empty(); }
  // Done, and (verification on) every range verified: the job may finish.
  bool Finished() const { return AllDone() && (!verify_ || verified_ == ranges_.size()); }
  size_t verified() const { return verified_; }
  // Done ranges waiting for a verify lease (verification on).
  size_t verify_pending() const { return verify_pending_.size(); }
  // Leases held for verification.
  size_t verify_leased() const { return verify_leased_; }
  uint64_t rows_repaired() const { return repaired_total_; }
  // No pending or leased range left, and at least one failed.
  bool Failed() const;

  size_t count(RangeState s) const { return counts_[static_cast<int>(s)]; }
  // Sums of every range's rows / bytes (running totals, O(1)).
  uint64_t rows_total() const { return rows_total_; }
  uint64_t bytes_total() const { return bytes_total_; }
  // Sum of every range's rejected rows (running total, O(1)).
  uint64_t rejected_total() const { return rejected_total_; }
  // Sum over ranges of (done ? rows : max(est_rows, rows)): the estimate of
  // the job's total rows, refined as ranges finish (running total, O(1)).
  uint64_t rows_estimated() const { return estimate_total_; }
  // Leased ranges whose cursor has not moved for `stall_ms` of leased time,
  // counted across re-grants (RangeRecord::StalledForMs). O(leased).
  size_t CountStalled(int64_t stall_ms) const;
  // Ids of the leased ranges, earliest deadline first. O(leased).
  std::vector<uint64_t> leased() const;

  // Ids mutated since the last call (inserted ones excluded).
  std::vector<uint64_t> TakeDirty();
  // Ids of ranges created (split tails) since the last call.
  std::vector<uint64_t> TakeInserted();

 private:
  RangeRecord* Owned(uint64_t range, uint64_t epoch, const std::string& worker, Status* why);
  // A copy lease's report whose cursor is at or past the range's end (the
  // owner wrote past a split): the lease is revoked; kLeaseLost.
  Status PastEnd(RangeRecord* r, const Progress& p);
  void SetState(RangeRecord* r, RangeState s);
  // A verify lease ends: back to done, verified or not.
  void EndVerifyLease(RangeRecord* r, bool verified);
  void ApplyVerifyProgress(RangeRecord* r, const Progress& p);
  // Files r in verify_pending_ iff verification is on and it is done and
  // not verified.
  void RefileVerify(const RangeRecord& r);
  // Key order, the tables, every count, set and total, from ranges_.
  void RebuildIndexes();
  bool Copied(const RangeRecord& r) const {
    return r.state == RangeState::kDone || (r.state == RangeState::kLeased && r.verify_lease);
  }
  size_t Pos(uint64_t id) const { return pos_[id - 1]; }
  // Every change of a range's deadline_ms goes through here so the
  // deadline index stays exact.
  void SetDeadline(RangeRecord* r, int64_t deadline_ms);
  void ApplyProgress(RangeRecord* r, const Progress& p);
  void AdvancePrefix();
  // The table (index into table_begin_) of range `id`. O(log tables).
  uint32_t TableOf(uint64_t id) const;
  uint64_t AtPos(size_t pos) const { return order_[pos]; }
  // Re-files table t in idle_tables_ after its pending or leased set changed.
  void UpdateIdle(uint32_t t);

  const Clock* clock_;
  int64_t ttl_ms_;
  uint32_t max_attempts_;
  std::vector<RangeRecord> ranges_;
  uint64_t last_epoch_ = 0;
  bool verify_ = false;
  size_t done_prefix_ = 0;
  size_t counts_[4] = {0, 0, 0, 0};
  size_t verified_ = 0;
  size_t verify_leased_ = 0;
  uint64_t repaired_total_ = 0;
  // Key order: order_[pos] is an id, pos_[id - 1] its position.
  std::vector<uint64_t> order_;
  std::vector<size_t> pos_;
  // Positions of the pending ranges, and of the done ranges to verify.
  std::set<size_t> pending_;
  std::set<size_t> verify_pending_;
  // (deadline_ms, id) of every leased range: the set of leased ranges.
  std::set<std::pair<int64_t, uint64_t>> by_deadline_;
  uint64_t rows_total_ = 0;
  uint64_t bytes_total_ = 0;
  uint64_t rejected_total_ = 0;
  uint64_t estimate_total_ = 0;
  std::set<uint64_t> dirty_;
  std::vector<uint64_t> inserted_;
  // Tables, numbered in key order: table t's ranges are at positions
  // [table_begin_[t], table_begin_[t + 1]).
  std::vector<size_t> table_begin_;
  std::vector<uint64_t> table_leased_;  // copy leases per table
  // The first pending position of every table with a pending range and no
  // copy lease (idle_key_[t], SIZE_MAX if t is not in the set).
  std::set<size_t> idle_tables_;
  std::vector<size_t> idle_key_;
};

// Printable boundary for status: table:(key), or "" when none.
std::string BoundaryToString(std::string_view boundary);

}  // namespace ferry
