// The columns of a range row (RangeRecord) in the coordinator's state, as
// both state stores (SqliteStateStore, PgStateStore) write and read them:
// one list, in one order, so adding a persisted RangeRecord field is one
// line in VisitRangeColumns (plus the column's declaration in each store's
// schema and a kStateSchemaVersion bump: the types are the stores' own).
//
// Each column has its name; the state schema version that added it (a
// state of an older version has no such column and reads it as its
// default); its role (the key, fixed once inserted, or rewritten by every
// range update); and, for a string, whether it holds bytes (a SQLite BLOB:
// keys and cursors) or text (SQLite TEXT; PostgreSQL keeps both as bytea).
// A field is a uint64_t, uint32_t, int64_t, bool, RangeState or
// std::string.
//
// Thread safety: stateless functions.
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "common/status.h"
#include "coordinator/range_record.h"

namespace ferry {

enum class RangeColumnRole {
  kKey,      // the range id: inserted, then the row an update names
  kFixed,    // inserted, never updated
  kUpdated,  // inserted, and rewritten by every range update
};

struct RangeColumn {
  const char* name;
  int since;  // the state schema version that added the column
  RangeColumnRole role;
  bool blob;  // a string of bytes, not text (SQLite BLOB)
};

// Calls f(column, field) for each column of a range row, in order, with
// `r`'s member that the column holds (`Record` is RangeRecord or const
// RangeRecord).
template <typename Record, typename F>
void VisitRangeColumns(Record& r, F&& f) {
  using R = RangeColumnRole;
  f(RangeColumn{"id", 1, R::kKey, false}, r.id);
  f(RangeColumn{"table_name", 1, R::kFixed, false}, r.table);
  f(RangeColumn{"lo", 1, R::kFixed, true}, r.lo);
  f(RangeColumn{"hi", 1, R::kUpdated, true}, r.hi);  // a split ends the head at its key
  f(RangeColumn{"est_rows", 1, R::kUpdated, false}, r.est_rows);
  f(RangeColumn{"state", 1, R::kUpdated, false}, r.state);
  f(RangeColumn{"owner", 1, R::kUpdated, false}, r.owner);
  f(RangeColumn{"epoch", 1, R::kUpdated, false}, r.epoch);
  f(RangeColumn{"deadline_ms", 1, R::kUpdated, false}, r.deadline_ms);
  f(RangeColumn{"cursor", 1, R::kUpdated, true}, r.cursor);
  f(RangeColumn{"rows", 1, R::kUpdated, false}, r.rows);
  f(RangeColumn{"bytes", 1, R::kUpdated, false}, r.bytes);
  f(RangeColumn{"digest", 1, R::kUpdated, false}, r.digest);
  f(RangeColumn{"attempts", 1, R::kUpdated, false}, r.attempts);
  f(RangeColumn{"errors", 1, R::kUpdated, false}, r.errors);
  f(RangeColumn{"last_error", 1, R::kUpdated, false}, r.last_error);
  f(RangeColumn{"rejected", 2, R::kUpdated, false}, r.rejected);
  f(RangeColumn{"parent", 3, R::kFixed, false}, r.parent);
  f(RangeColumn{"verified", 3, R::kUpdated, false}, r.verified);
  f(RangeColumn{"verify_lease", 3, R::kUpdated, false}, r.verify_lease);
  f(RangeColumn{"verify_cursor", 3, R::kUpdated, true}, r.verify_cursor);
  f(RangeColumn{"rows_repaired", 3, R::kUpdated, false}, r.rows_repaired);
}

// What each(column, field) gives for the columns (fields of a default
// RangeRecord, for their types), joined with ", "; empty strings are left
// out.
template <typename F>
std::string JoinRangeColumns(F&& each) {
  const RangeRecord r;
  std::string out;
  VisitRangeColumns(r, [&](const RangeColumn& c, const auto& field) {
    const std::string s = each(c, field);
    if (s.empty()) return;
    if (!out.empty()) out += ", ";
    out += s;
  });
  return out;
}

// A range row read back, its columns in VisitRangeColumns' order: `row`
// reads column i with row.Int(i) (int64_t), row.Bool(i) and row.Bytes(i)
// (std::string). kInternal on a state that is not a RangeState. A verify
// lease flag left on a range that is not leased is cleared.
template <typename Row>
Result<RangeRecord> ReadRangeRow(const Row& row) {
  RangeRecord r;
  Status bad;
  int i = 0;
  VisitRangeColumns(r, [&](const RangeColumn&, auto& field) {
    using T = std::decay_t<decltype(field)>;
    const int col = i++;
    if constexpr (std::is_same_v<T, std::string>) {
      field = row.Bytes(col);
    } else if constexpr (std::is_same_v<T, bool>) {
      field = row.Bool(col);
    } else if constexpr (std::is_same_v<T, RangeState>) {
      const int64_t st = row.Int(col);
      if (st < 0 || st > 3) {
        bad = Internal(fmt::format("range {} has unknown state {}", r.id, st));
      } else {
        field = static_cast<RangeState>(st);
      }
    } else {
      field = static_cast<T>(row.Int(col));
    }
  });
  if (!bad.ok()) return bad;
  if (r.verify_lease && r.state != RangeState::kLeased) r.verify_lease = false;
  return r;
}

}  // namespace ferry
