#include "worker/spec_row_source.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/digest.h"
#include "common/key_codec.h"
#include "common/text_util.h"
#include "stores/row_compare.h"
#include "stores/table_checks.h"

namespace ferry {
namespace {

constexpr size_t kReadRows = 1024;
constexpr size_t kReadBytes = 8u << 20;

void AppendRow(const std::string& key, const Value* row, size_t width, RowBatch* out) {
  out->keys.push_back(key);
  out->bytes += key.size();
  for (size_t c = 0; c < width; ++c) {
    out->cells.push_back(row[c]);
    out->bytes += PayloadBytes(row[c]);
  }
}

// Folds rows from `read` (a RowSource's Read) into *out until max_rows.
template <typename ReadFn>
Status DigestByReading(ReadFn read, DigestMode mode, std::string_view after, size_t max_rows,
                       RowsDigest* out) {
  *out = RowsDigest{};
  std::string cursor(after), scratch;
  RowBatch batch;
  while (out->rows < max_rows) {
    const size_t want = std::min(max_rows - static_cast<size_t>(out->rows), kReadRows);
    FERRY_RETURN_IF_ERROR(read(cursor, want, &batch));
    if (batch.rows() == 0) return Status::Ok();
    for (size_t i = 0; i < batch.rows(); ++i) {
      scratch.clear();
      AppendRowBytes(mode, batch.keys[i], batch.row(i), batch.width, &scratch);
      out->digest = FoldRowBytes(out->digest, scratch);
      out->rows++;
    }
    out->last_key = batch.keys.back();
    cursor = batch.keys.back();
  }
  return Status::Ok();
}

}  // namespace

Status SpecLegacySource::ReadExpected(std::string_view after, std::string_view through,
                                      size_t max_rows, RowBatch* out) {
  out->Clear();
  out->width = plan_->write.width();
  if (key_cells_.empty()) {
    key_cells_ = plan_->write.rowid_key() ? std::vector<size_t>{0} : plan_->write.key_columns;
  }
  const KeyRange source_range{plan_->source.name, range_.lo, range_.hi};
  std::string cursor(after);
  std::vector<Reject> failed;
  std::vector<Value> key_values(key_cells_.size());
  while (out->rows() < max_rows) {
    FERRY_RETURN_IF_ERROR(source_->ReadProjected(plan_->source, plan_->projection, source_range,
                                                 cursor, kReadRows, kReadBytes, &read_));
    if (read_.rows() == 0) return Status::Ok();
    cursor = read_.keys.back();
    const RowBatch* rows = &read_;
    if (lua_) {
      failed.clear();
      TransformBatch(*plan_, lua_, read_, &kept_, &failed);  // failed rows: not expected
      rows = &kept_;
    }
    for (size_t i = 0; i < rows->rows(); ++i) {
      const std::string& key = rows->keys[i];
      if (!through.empty() && std::string_view(key) > through) return Status::Ok();
      if (!rejected_->empty() && rejected_->count(KeyToFullString(key))) continue;
      const Value* row = rows->row(i);
      for (size_t k = 0; k < key_cells_.size(); ++k) key_values[k] = row[key_cells_[k]];
      const std::string target_key = EncodeKey(key_values);
      if (target_key != key) {
        return Permanent(fmt::format(
            "target {}: legacy key {} becomes target key {}: verification (--verify) needs the "
            "target's key to carry the legacy key; check this target with ferryctl verify instead",
            plan_->entry.target, KeyToString(key), KeyToString(target_key)));
      }
      AppendRow(key, row, out->width, out);
      if (out->rows() == max_rows) return Status::Ok();
    }
    if (!through.empty() && std::string_view(cursor) >= through) return Status::Ok();
  }
  return Status::Ok();
}

Status SpecLegacySource::Read(std::string_view after, std::string_view through, size_t max_rows,
                              RowBatch* out) {
  return ReadExpected(after, through, max_rows, out);
}

Status SpecLegacySource::Digest(std::string_view after, std::string_view through, size_t max_rows,
                                RowsDigest* out) {
  return DigestByReading(
      [&](const std::string& cursor, size_t want, RowBatch* batch) {
        return ReadExpected(cursor, through, want, batch);
      },
      mode_, after, max_rows, out);
}

Result<SpecTargetSource> SpecTargetSource::Create(const TargetPlan* plan, Store* target,
                                                  const TableSchema* have, KeyRange range,
                                                  DigestMode mode) {
  const std::vector<std::string> have_cells = CellNames(*have, RowidAlias(have->columns));
  const std::vector<std::string> write_cells =
      CellNames(plan->write, RowidAlias(plan->write.columns));
  std::vector<size_t> at;
  for (const std::string& name : write_cells) {
    auto it = std::find(have_cells.begin(), have_cells.end(), name);
    if (it == have_cells.end()) {
      it = std::find_if(have_cells.begin(), have_cells.end(),
                        [&](const std::string& h) { return IEquals(h, name); });
    }
    if (it == have_cells.end()) {
      return Permanent(fmt::format("the new store's table {} has no column {} (the spec writes it)",
                                   have->name, name));
    }
    at.push_back(static_cast<size_t>(it - have_cells.begin()));
  }
  range.table = have->name;
  return SpecTargetSource(target, have, std::move(range), mode, std::move(at));
}

Status SpecTargetSource::Read(std::string_view after, std::string_view through, size_t max_rows,
                              RowBatch* out) {
  FERRY_RETURN_IF_ERROR(target_->ReadBatch(*have_, range_, after, max_rows, kReadBytes, &read_));
  out->Clear();
  out->width = at_.size();
  std::vector<Value> row(at_.size());
  for (size_t i = 0; i < read_.rows(); ++i) {
    if (!through.empty() && std::string_view(read_.keys[i]) > through) break;
    const Value* have_row = read_.row(i);
    for (size_t c = 0; c < at_.size(); ++c) row[c] = have_row[at_[c]];
    AppendRow(read_.keys[i], row.data(), row.size(), out);
  }
  return Status::Ok();
}

Status SpecTargetSource::Digest(std::string_view after, std::string_view through, size_t max_rows,
                                RowsDigest* out) {
  return DigestByReading([&](const std::string& cursor, size_t want,
                             RowBatch* batch) { return Read(cursor, through, want, batch); },
                         mode_, after, max_rows, out);
}

}  // namespace ferry
