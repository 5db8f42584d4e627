// Range digest: xxHash (XXH3-64) over each row's key and value bytes, chained
// in key order: d' = XXH3_64(row bytes, seed = d). The whole state is one
// uint64, so a range resumed after a cursor continues the digest from the
// value reported with that cursor.
//
// Row bytes: the encoded key, then the key-encoding of each cell (which
// distinguishes NULL from empty text and text from blob).
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/key_codec.h"
#include "common/value.h"

namespace ferry {

// Folds one row's bytes (as described above) into `digest`. Every path that
// copies rows (FoldDigest below, SqliteStore's direct copy) folds with this.
inline uint64_t FoldRowBytes(uint64_t digest, std::string_view row_bytes) {
  return XXH3_64bits_withSeed(row_bytes.data(), row_bytes.size(), digest);
}

// Folds rows [0, batch.rows()) of `batch` into `digest`. `scratch` is reused
// between calls to avoid allocations.
inline uint64_t FoldDigest(uint64_t digest, const RowBatch& batch, std::string* scratch) {
  for (size_t i = 0; i < batch.rows(); ++i) {
    scratch->assign(batch.keys[i]);
    const Value* row = batch.row(i);
    for (size_t c = 0; c < batch.width; ++c) AppendKeyElement(row[c], scratch);
    digest = FoldRowBytes(digest, *scratch);
  }
  return digest;
}

}  // namespace ferry
