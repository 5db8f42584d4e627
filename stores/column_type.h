// The neutral column-type model: what a column holds, in no engine's syntax.
//
// Each engine maps its OWN dialect to and from it (stores/sqlite/
// sqlite_dialect.h, stores/postgresql/pg_dialect.h): when it lists a table,
// every Column gets the neutral type beside its declared type; when it
// creates a table whose schema came from ANOTHER engine, it builds its DDL
// from the neutral types only. A copy between two stores of the same engine
// keeps using the source's own DDL. So no engine reads another's type
// syntax, and a new engine is one new folder that maps its dialect both ways
// (and one entry in stores/store_factory.cc).
//
// The model is deliberately coarse: kinds that decide how values travel and
// what a target column should be, plus the few parameters that matter when
// writing DDL (widths, numeric precision, text length). A source that cannot
// say more (SQLite, whose declared types are only affinities) leaves the
// parameters unset.
//
// Pure values; thread-safe.
#pragma once

#include <string>

namespace ferry {

enum class TypeKind {
  kAny,          // no declared type: any value (a typeless SQLite column)
  kBoolean,      // true / false
  kInteger,      // whole numbers; `bits` when the width is known (16, 32, 64)
  kReal,         // binary floating point; `bits` 32 or 64 when known
  kNumeric,      // exact decimal; `precision` / `scale` when declared
  kText,         // character strings; `length` when bounded, `fixed_length` for char(n)
  kBlob,         // byte strings
  kDate,         // calendar date
  kTime,         // time of day; `precision` = fractional-second digits when declared
  kTimeTz,       // time of day with a time zone
  kTimestamp,    // date and time without a time zone
  kTimestampTz,  // an instant (date and time with a time zone)
  kInterval,     // a duration
  kUuid,         // 128-bit UUID
  kJson,         // a JSON document
  kOther,        // anything else (arrays, ranges, enums, geometry, ...): held as text
};

struct ColumnType {
  TypeKind kind = TypeKind::kAny;
  int bits = 0;               // kInteger, kReal: storage width when known; 0 = unknown
  int precision = -1;         // kNumeric: total digits; time kinds: fractional digits; -1 = unset
  int scale = -1;             // kNumeric: digits after the point; -1 = unset
  int length = -1;            // kText: maximum length in characters; -1 = unbounded
  bool fixed_length = false;  // kText: blank-padded char(n)

  bool operator==(const ColumnType& o) const {
    return kind == o.kind && bits == o.bits && precision == o.precision && scale == o.scale &&
           length == o.length && fixed_length == o.fixed_length;
  }
  bool operator!=(const ColumnType& o) const { return !(*this == o); }
};

// "integer", "text", ... (lower case, stable: used in messages and tests).
const char* TypeKindName(TypeKind kind);

// The kind and its set parameters, e.g. "numeric(10,2)", "text(40)",
// "integer/32", "any".
std::string ToString(const ColumnType& type);

}  // namespace ferry
