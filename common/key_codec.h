// Order-preserving key encoding (in the spirit of the FoundationDB tuple
// layer): a key is a tuple of Values, encoded so that encoded keys compare
// bytewise (memcmp, shorter prefix first) in the order SQLite sorts the tuples:
// NULL < integers < reals < text < blob, text and blob bytewise.
//
// Element encodings:
//   NULL    0x05
//   integer 0x10 + 8 bytes big-endian of (uint64)v ^ 2^63
//   real    0x20 + 8 bytes: IEEE-754 bits, sign flipped (negatives inverted)
//   text    0x30 + bytes with 0x00 escaped as 0x00 0xFF, then 0x00
//   blob    0x40 + same escaping, then 0x00
// Integers and reals are separate types here; a key column that mixes them is
// still scanned correctly (scans compare in the store) but its encoded order
// is by type first.
//
// The empty string is not a valid key; ranges use it for "unbounded".
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/value.h"

namespace ferry {

// Append one element's encoding to *out; AppendKeyElement dispatches on the
// Value's type to the others (which take cells without building a Value).
void AppendKeyElement(const Value& v, std::string* out);
void AppendKeyNull(std::string* out);
void AppendKeyInt(int64_t v, std::string* out);
void AppendKeyReal(double v, std::string* out);
void AppendKeyText(std::string_view bytes, std::string* out);
void AppendKeyBlob(std::string_view bytes, std::string* out);
std::string EncodeKey(const Value* values, size_t n);
inline std::string EncodeKey(const std::vector<Value>& values) {
  return EncodeKey(values.data(), values.size());
}

// Decodes an encoded key. Rejects every malformed form (unknown tag,
// truncated element, bad escape) with kInvalidArgument.
Result<std::vector<Value>> DecodeKey(std::string_view encoded);

// Printable form for status and logs: (1, 'abc', x'00ff'); text longer
// than 64 bytes and blobs longer than 32 are cut with "...".
std::string KeyToString(std::string_view encoded);
// The same form, but exact, so that distinct keys print distinctly: nothing
// cut, quotes in text doubled ('O''Brien'), reals always with a point or an
// exponent (3.0). For `__ferry_rejects.source_key` (DESIGN.md "Migration
// spec"); equal to KeyToString for the usual keys (integers, short text
// without quotes).
std::string KeyToFullString(std::string_view encoded);

}  // namespace ferry
