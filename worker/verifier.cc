#include "worker/verifier.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/key_codec.h"
#include "stores/row_compare.h"

namespace ferry {
namespace {

constexpr size_t kReadRows = 1024;
constexpr size_t kReadBytes = 8u << 20;
constexpr size_t kFlushRows = 1000;

bool Differ(const RowsDigest& a, const RowsDigest& b) {
  return a.rows != b.rows || a.digest != b.digest || a.last_key != b.last_key;
}

// Target digests may see more rows than the legacy side (rows only the new
// store has): enough to tell that they differ, bounded.
size_t TargetCap(uint64_t legacy_rows) { return static_cast<size_t>(2 * legacy_rows + 16); }

// One side of a piece, row by row.
class SideReader {
 public:
  SideReader(RowSource* src, std::string_view after, std::string_view through)
      : src_(src), after_(after), through_(through) {}
  Result<bool> Valid() {
    if (pos_ < batch_.rows()) return true;
    if (done_) return false;
    FERRY_RETURN_IF_ERROR(src_->Read(after_, through_, kReadRows, &batch_));
    pos_ = 0;
    if (batch_.rows() == 0) {
      done_ = true;
      return false;
    }
    after_ = batch_.keys.back();
    return true;
  }
  const std::string& key() const { return batch_.keys[pos_]; }
  const Value* row() const { return batch_.row(pos_); }
  size_t width() const { return batch_.width; }
  void Next() { ++pos_; }

 private:
  RowSource* src_;
  std::string after_;
  std::string through_;
  RowBatch batch_;
  size_t pos_ = 0;
  bool done_ = false;
};

void AppendRow(const std::string& key, const Value* row, size_t width, RowBatch* out) {
  out->width = width;
  out->keys.push_back(key);
  out->bytes += key.size();
  for (size_t c = 0; c < width; ++c) {
    out->cells.push_back(row[c]);
    out->bytes += PayloadBytes(row[c]);
  }
}

}  // namespace

Status StoreRowSource::Digest(std::string_view after, std::string_view through, size_t max_rows,
                              RowsDigest* out) {
  return store_->DigestRows(*table_, range_, after, through, max_rows, mode_, out);
}

Status StoreRowSource::Read(std::string_view after, std::string_view through, size_t max_rows,
                            RowBatch* out) {
  FERRY_RETURN_IF_ERROR(store_->ReadBatch(*table_, range_, after, max_rows, kReadBytes, out));
  if (through.empty()) return Status::Ok();
  // Rows come in key order: drop those past `through`.
  size_t keep = 0;
  while (keep < out->rows() && std::string_view(out->keys[keep]) <= through) ++keep;
  if (keep < out->rows()) {
    out->keys.resize(keep);
    out->cells.resize(keep * out->width);
  }
  return Status::Ok();
}

Status RangeVerifier::VerifyChunk(std::string_view after, ChunkResult* out) {
  *out = ChunkResult{};
  RowsDigest legacy;
  FERRY_RETURN_IF_ERROR(legacy_->Digest(after, "", opt_.chunk_rows, &legacy));
  const bool full = legacy.rows >= opt_.chunk_rows;
  // A full chunk ends at its last legacy key; the last one at the range end.
  const std::string through = full ? legacy.last_key : std::string();
  RowsDigest target;
  FERRY_RETURN_IF_ERROR(target_->Digest(after, through, TargetCap(legacy.rows), &target));
  out->legacy_rows = legacy.rows;
  out->end = !full;
  out->last_key = legacy.rows > 0 ? legacy.last_key : std::string(after);
  if (!Differ(legacy, target)) return Status::Ok();
  return Settle(after, through, legacy.rows, out);
}

Status RangeVerifier::Settle(std::string_view after, std::string_view through, uint64_t legacy_rows,
                             ChunkResult* out) {
  if (legacy_rows <= opt_.leaf_rows) return CompareAndRepair(after, through, out);
  const size_t half = static_cast<size_t>(legacy_rows / 2);
  RowsDigest l1, t1, l2, t2;
  FERRY_RETURN_IF_ERROR(legacy_->Digest(after, through, half, &l1));
  if (l1.rows == 0) return CompareAndRepair(after, through, out);  // changed under us
  const std::string mid = l1.last_key;
  FERRY_RETURN_IF_ERROR(target_->Digest(after, mid, TargetCap(l1.rows), &t1));
  FERRY_RETURN_IF_ERROR(legacy_->Digest(mid, through, legacy_rows - half + 1, &l2));
  FERRY_RETURN_IF_ERROR(target_->Digest(mid, through, TargetCap(l2.rows), &t2));
  const bool d1 = Differ(l1, t1);
  const bool d2 = Differ(l2, t2);
  // Both halves differ: differences are everywhere (or cells the type
  // mapping converts); halving further would read the piece many times.
  if (d1 && d2) return CompareAndRepair(after, through, out);
  if (d1) return Settle(after, mid, l1.rows, out);
  if (d2) return Settle(mid, through, l2.rows, out);
  // The whole differed, neither half does now (a concurrent change).
  return CompareAndRepair(after, through, out);
}

Status RangeVerifier::CompareAndRepair(std::string_view after, std::string_view through,
                                       ChunkResult* out) {
  const uint64_t before = out->repaired;
  FERRY_RETURN_IF_ERROR(Pass(after, through, /*repair=*/true, out));
  if (out->repaired == before) return Status::Ok();
  // Verified again after the repair.
  ChunkResult again;
  return Pass(after, through, /*repair=*/false, &again);
}

Status RangeVerifier::Pass(std::string_view after, std::string_view through, bool repair,
                           ChunkResult* out) {
  SideReader a(legacy_, after, through);
  SideReader b(target_, after, through);
  RowBatch writes;
  std::vector<std::string> deletes;
  auto flush = [&]() -> Status {
    if (writes.rows() > 0) FERRY_RETURN_IF_ERROR(repairer_->Write(writes));
    if (!deletes.empty()) FERRY_RETURN_IF_ERROR(repairer_->Delete(deletes));
    writes.Clear();
    deletes.clear();
    return Status::Ok();
  };
  auto repaired = [&](const std::string& key, const char* what) -> Status {
    if (!repair) {
      return Unavailable(
          fmt::format("key {} {} even after its repair (is something else writing "
                      "to the new store?)",
                      KeyToString(key), what));
    }
    out->repaired++;
    if (out->repaired_keys.size() < opt_.max_keys) out->repaired_keys.push_back(key);
    return Status::Ok();
  };
  for (;;) {
    FERRY_ASSIGN_OR_RETURN(bool have_a, a.Valid());
    FERRY_ASSIGN_OR_RETURN(bool have_b, b.Valid());
    if (!have_a && !have_b) break;
    if (have_a && have_b && a.width() != b.width()) {
      return Permanent(fmt::format(
          "the new store's table has {} cells per row, the legacy store's {}: verification "
          "cannot compare them",
          b.width(), a.width()));
    }
    const int cmp = !have_a ? 1 : !have_b ? -1 : a.key().compare(b.key());
    if (cmp < 0) {
      FERRY_RETURN_IF_ERROR(repaired(a.key(), "is missing from the new store"));
      AppendRow(a.key(), a.row(), a.width(), &writes);
    } else if (cmp > 0) {
      FERRY_RETURN_IF_ERROR(repaired(b.key(), "is in the new store but not in the legacy store"));
      deletes.push_back(b.key());
    } else if (FirstDifferentCell(a.row(), b.row(), a.width(), opt_.cross_engine,
                                  &out->converted)) {
      FERRY_RETURN_IF_ERROR(repaired(a.key(), "differs"));
      AppendRow(a.key(), a.row(), a.width(), &writes);
    }
    if (cmp <= 0) {
      out->compared_rows++;
      a.Next();
    }
    if (cmp >= 0) b.Next();
    if (writes.rows() >= kFlushRows || deletes.size() >= kFlushRows) {
      FERRY_RETURN_IF_ERROR(flush());
    }
  }
  return flush();
}

}  // namespace ferry
