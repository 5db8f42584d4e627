// RangeVerifier: compares one range of the legacy store with the new store
// chunk by chunk and repairs what differs (DESIGN.md "Verification with
// repair"; PRIOR-ART.md "Verification and repair at scale").
//
// A chunk is up to `chunk_rows` legacy rows after a cursor (the last chunk
// runs to the range's end). Both sides digest the chunk (Store::DigestRows:
// in SQLite inside the engine, elsewhere by reading and folding); equal
// digests end the chunk's work — with no differences verification costs
// about a COUNT(*) of each side. A chunk whose digests differ is bisected by
// legacy row count, both halves digested again, down to pieces of
// `leaf_rows` legacy rows that are compared row by row with the comparison
// semantics of `ferryctl verify` (stores/row_compare.h: exact on one
// engine, value-equal across SQLite <-> PostgreSQL); when both halves of a
// piece differ (differences everywhere, or cells the type mapping converts)
// the whole piece is compared row by row at once.
//
// Repairs go through the Repairer — the worker's fenced write path under the
// verify lease's epoch: legacy rows missing or different in the new store
// are written again (Store::WriteBatch), rows only the new store has are
// deleted (Store::DeleteRows). Each repaired piece is then compared again
// row by row; a difference that survives its repair (another writer behind
// ferry's back) fails the chunk with kUnavailable, and the range is verified
// again by a later lease.
//
// Row sources: each side is a RowSource. Today both read a store
// (StoreRowSource); the migration spec's transform (issue 16) plugs in as a
// RowSource wrapping the legacy one — Read() transforms the rows it reads,
// Digest() folds the transformed rows (DigestRows' default way) — with
// nothing else changed here, as long as transformed rows come in target-key
// order.
//
// Thread safety: one verifier per worker thread; it borrows its sources and
// repairer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/value.h"
#include "stores/store.h"

namespace ferry {

// One side of a range as verification reads it.
class RowSource {
 public:
  virtual ~RowSource() = default;
  // Up to `max_rows` rows after `after` (the range start when empty) and at
  // or before `through` (the range end when empty), digested in `mode`.
  virtual Status Digest(std::string_view after, std::string_view through, size_t max_rows,
                        RowsDigest* out) = 0;
  // The same rows, read (at most `max_rows`, in key order) into *out.
  virtual Status Read(std::string_view after, std::string_view through, size_t max_rows,
                      RowBatch* out) = 0;
};

// A range of one store's table.
class StoreRowSource final : public RowSource {
 public:
  StoreRowSource(Store* store, const TableSchema* table, KeyRange range, DigestMode mode)
      : store_(store), table_(table), range_(std::move(range)), mode_(mode) {}
  Status Digest(std::string_view after, std::string_view through, size_t max_rows,
                RowsDigest* out) override;
  Status Read(std::string_view after, std::string_view through, size_t max_rows,
              RowBatch* out) override;

 private:
  Store* store_;
  const TableSchema* table_;
  KeyRange range_;
  DigestMode mode_;
};

// The fenced write path of the verify lease.
class Repairer {
 public:
  virtual ~Repairer() = default;
  // Writes legacy rows (idempotent upserts).
  virtual Status Write(const RowBatch& rows) = 0;
  // Deletes rows by encoded key.
  virtual Status Delete(const std::vector<std::string>& keys) = 0;
};

struct ChunkResult {
  std::string last_key;  // the chunk's last legacy key: the next cursor
  bool end = false;      // nothing of the range is left after this chunk
  uint64_t legacy_rows = 0;
  uint64_t repaired = 0;                   // rows written again or deleted
  std::vector<std::string> repaired_keys;  // the first `max_keys` of them
  uint64_t converted = 0;                  // cells equal only in value (cross-engine)
  uint64_t compared_rows = 0;              // legacy rows compared row by row
};

class RangeVerifier {
 public:
  struct Options {
    size_t chunk_rows = 10000;
    size_t leaf_rows = 256;
    bool cross_engine = false;  // value-equal cells of another storage class are equal
    size_t max_keys = 20;       // repaired keys listed per chunk
  };
  RangeVerifier(RowSource* legacy, RowSource* target, Repairer* repairer, Options options)
      : legacy_(legacy), target_(target), repairer_(repairer), opt_(options) {}

  // Verifies (and repairs) the chunk after `after`.
  Status VerifyChunk(std::string_view after, ChunkResult* out);

 private:
  // (after, through] holds `legacy_rows` legacy rows (through empty: to the
  // range end) and its digests differ.
  Status Settle(std::string_view after, std::string_view through, uint64_t legacy_rows,
                ChunkResult* out);
  // Row by row: repairs (after, through] and checks it again.
  Status CompareAndRepair(std::string_view after, std::string_view through, ChunkResult* out);
  // One row-by-row pass; repairs what differs when `repair`, else returns
  // kUnavailable naming the first difference.
  Status Pass(std::string_view after, std::string_view through, bool repair, ChunkResult* out);

  RowSource* legacy_;
  RowSource* target_;
  Repairer* repairer_;
  Options opt_;
};

}  // namespace ferry
