// Default implementations of the optional Store methods (stores/store.h):
// written once on top of ReadBatch, so every engine has them; engines
// override them where they can do better (stores/sqlite/).
#include <fmt/format.h>

#include "common/digest.h"
#include "stores/row_compare.h"
#include "stores/store.h"

namespace ferry {
namespace {

constexpr size_t kDefaultBytes = 8u << 20;
constexpr size_t kDefaultRows = 4096;

}  // namespace

Result<std::optional<std::string>> Store::KeyAfter(const TableSchema& table, const KeyRange& range,
                                                   std::string_view after, uint64_t skip) {
  RowBatch batch;
  std::string cursor(after);
  uint64_t left = skip;
  for (;;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(left + 1, kDefaultRows));
    FERRY_RETURN_IF_ERROR(ReadBatch(table, range, cursor, want, kDefaultBytes, &batch));
    if (batch.rows() == 0) return std::optional<std::string>();
    if (left < batch.rows()) return std::optional<std::string>(batch.keys[left]);
    left -= batch.rows();
    cursor = batch.keys.back();
  }
}

Status Store::DigestRows(const TableSchema& table, const KeyRange& range, std::string_view after,
                         std::string_view through, size_t max_rows, DigestMode mode,
                         RowsDigest* out) {
  *out = RowsDigest{};
  RowBatch batch;
  std::string cursor(after);
  std::string scratch;
  while (out->rows < max_rows) {
    const size_t want = std::min(max_rows - static_cast<size_t>(out->rows), kDefaultRows);
    FERRY_RETURN_IF_ERROR(ReadBatch(table, range, cursor, want, kDefaultBytes, &batch));
    if (batch.rows() == 0) return Status::Ok();
    for (size_t i = 0; i < batch.rows(); ++i) {
      if (!through.empty() && std::string_view(batch.keys[i]) > through) return Status::Ok();
      scratch.clear();
      AppendRowBytes(mode, batch.keys[i], batch.row(i), batch.width, &scratch);
      out->digest = FoldRowBytes(out->digest, scratch);
      out->rows++;
      out->last_key = batch.keys[i];
    }
    cursor = batch.keys.back();
  }
  return Status::Ok();
}

}  // namespace ferry
