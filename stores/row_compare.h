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
// Digests (DigestMode, stores/store.h): kExact folds the row bytes of the
// range digest (common/digest.h); kValues folds each cell's value as text, so
// that the usual conversions digest alike on both engines. Equal kValues
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

// Appends one cell's kValues bytes: 0x05 for NULL, else 0x30 + its value as
// text, escaped like key text (common/key_codec.h), so cells delimit
// themselves. Integers in decimal, reals as fmt's shortest round-trip text.
void AppendValueCell(const Value& v, std::string* out);
void AppendValueInt(int64_t v, std::string* out);
void AppendValueReal(double v, std::string* out);
void AppendValueBytes(std::string_view bytes, std::string* out);

// A row's digest bytes in `mode`: the encoded key, then every cell.
void AppendRowBytes(DigestMode mode, std::string_view key, const Value* row, size_t width,
                    std::string* out);

}  // namespace ferry
