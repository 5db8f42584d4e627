// What "the same row" means when ferry compares a legacy store with a new
// store: `ferryctl verify` (ctl/verify.h) and the workers' verification
// (worker/verifier.h) both compare with these functions.
//
// Same engine: key and every cell exactly, storage class included (1, '1'
// and x'31' differ): the cells' key encodings (common/key_codec.h) must be
// equal. Across engines (SQLite <-> PostgreSQL) a cell may change storage
// class as the documented type mapping converts it (an integer into a bytea
// column becomes its decimal text's bytes, a real into numeric is read back
// as exact decimal text, text into bytea becomes its bytes): such a cell is
// the same value if the bytes are the same, or if both sides are numbers of
// equal value (SameValueAcrossEngines), and is counted as converted.
//
// Digests (DigestMode, stores/store.h): kExact folds each cell's storage
// class and bytes; kValues folds each cell's value as text, so that the usual
// conversions digest alike on both engines. Cells are length-prefixed (no
// escaping pass over the bytes: digests are read-heavy). Equal kValues
// bytes imply SameValueAcrossEngines cell by cell; the converse does not
// hold (text '007' and integer 7 are the same value with other bytes), so a
// digest that differs is always settled row by row.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/value.h"
#include "stores/store.h"

namespace ferry {

// The canonical bytes of one cell for exact comparison: its key encoding.
std::string CellBytes(const Value& v);

// The same value in another storage class, as the type mapping converts it.
bool SameValueAcrossEngines(const Value& x, const Value& y);

// A cell as KeyToString prints a key element: 42, 'text', x'00ff', NULL.
std::string CellText(const Value& v);

enum class CellMatch { kEqual, kConverted, kDifferent };
// x (legacy) against y (new): equal bytes, or (cross_engine) the same
// value converted, or different.
CellMatch CompareCell(const Value& x, const Value& y, bool cross_engine);

// The first cell of two rows of `width` cells that differs (nullopt: the
// rows are the same); *converted counts the cells equal only in value.
std::optional<size_t> FirstDifferentCell(const Value* x, const Value* y, size_t width,
                                         bool cross_engine, uint64_t* converted);

// One cell's digest bytes. kExact: a tag per storage class (NULL, integer,
// real, text, blob), then 8 bytes for numbers (a real's bits) or a 4-byte
// length and the bytes. kValues: NULL's tag, or one tag, a 4-byte length and
// the value as text (integers in decimal, reals as fmt's shortest round-trip
// text, text and blobs as their bytes).
void AppendExactCell(const Value& v, std::string* out);
void AppendExactNull(std::string* out);
void AppendExactInt(int64_t v, std::string* out);
void AppendExactReal(double v, std::string* out);
void AppendExactBytes(char tag, std::string_view bytes, std::string* out);  // 't' or 'b'
void AppendValueCell(const Value& v, std::string* out);
void AppendValueInt(int64_t v, std::string* out);
void AppendValueReal(double v, std::string* out);
void AppendValueBytes(std::string_view bytes, std::string* out);

// A row's digest bytes in `mode`: the encoded key, then every cell.
void AppendRowBytes(DigestMode mode, std::string_view key, const Value* row, size_t width,
                    std::string* out);

}  // namespace ferry
