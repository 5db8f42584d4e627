// A cell value as stores exchange it: SQLite's five storage classes, which
// PostgreSQL values map onto (see README "Type mapping").
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace ferry {

struct Null {
  bool operator==(const Null&) const { return true; }
};
struct Blob {
  std::string bytes;
  bool operator==(const Blob& o) const { return bytes == o.bytes; }
};
// Text is UTF-8 (not validated: bytes are copied as they are).
struct Text {
  std::string bytes;
  bool operator==(const Text& o) const { return bytes == o.bytes; }
};

using Value = std::variant<Null, int64_t, double, Text, Blob>;

// Rows read from one range, in key order. `keys[i]` is the encoded key
// (common/key_codec.h) of row i; `cells` holds `width` values per row in
// column order.
struct RowBatch {
  size_t width = 0;
  std::vector<std::string> keys;
  std::vector<Value> cells;
  uint64_t bytes = 0;  // key bytes + value payload bytes

  size_t rows() const { return keys.size(); }
  const Value* row(size_t i) const { return cells.data() + i * width; }
  void Clear() {
    keys.clear();
    cells.clear();
    bytes = 0;
  }
};

inline uint64_t PayloadBytes(const Value& v) {
  switch (v.index()) {
    case 1:
    case 2:
      return 8;
    case 3:
      return std::get<Text>(v).bytes.size();
    case 4:
      return std::get<Blob>(v).bytes.size();
    default:
      return 0;
  }
}

}  // namespace ferry
