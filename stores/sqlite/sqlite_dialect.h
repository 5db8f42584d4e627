// SQLite's schema dialect mapped to and from the neutral model
// (stores/column_type.h, stores/index_def.h). SqliteStore::ListTables maps
// its declared types and index DDL to the model; CreateSchema builds SQLite
// DDL from the model for a table another engine listed. Nothing here reads
// another engine's syntax.
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "stores/column_type.h"
#include "stores/index_def.h"
#include "stores/store.h"

namespace ferry {

// TableSchema::dialect of the tables SqliteStore lists.
inline constexpr const char* kSqliteDialect = "sqlite";

// The neutral type of a column declared `declared`, by SQLite's type-affinity
// rules (first match, ASCII case-insensitive): contains INT → integer;
// CHAR, CLOB or TEXT → text; BLOB → blob; no declared type → any; REAL, FLOA
// or DOUB → real; anything else (NUMERIC, DECIMAL(10,5), BOOLEAN, DATE, ...)
// → numeric. No parameters: SQLite enforces neither widths nor lengths.
ColumnType SqliteNeutralType(std::string_view declared);

// The declared type of a SQLite column holding `type`: INTEGER (integer,
// boolean), REAL, NUMERIC, BLOB, no type for any, and TEXT for everything
// else (text, dates and times, uuid, json, other: values arrive as text).
std::string SqliteDeclaredType(const ColumnType& type);

// A SQLite "CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON t (...) [WHERE ...]"
// in the neutral model: ASC / DESC become `descending`, COLLATE clauses are
// dropped (keys and indexes order bytewise anyway), a plain column reference
// becomes the exact name of the matching column of `columns`
// (case-insensitively), any other element stays an expression as written.
// Unreadable text gives an IndexDef with `unsupported` set.
IndexDef SqliteNeutralIndex(std::string_view sql, const std::vector<Column>& columns);

// "CREATE [UNIQUE] INDEX IF NOT EXISTS ..." on `table` for `index`;
// kInvalidArgument naming the table and index when it is unsupported.
Result<std::string> SqliteIndexSql(const IndexDef& index, const std::string& table);

}  // namespace ferry
