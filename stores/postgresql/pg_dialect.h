// PostgreSQL's schema dialect mapped to and from the neutral model
// (stores/column_type.h, stores/index_def.h). PgStore::ListTables maps the
// format_type() of each column (of its base type, for a domain) and each
// pg_get_indexdef() to the model; CreateSchema builds PostgreSQL DDL from the
// model for a table another engine listed. Nothing here reads another
// engine's syntax.
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "stores/column_type.h"
#include "stores/index_def.h"

namespace ferry {

// TableSchema::dialect of the tables PgStore lists.
inline constexpr const char* kPgDialect = "postgresql";

// The neutral type of a PostgreSQL type as format_type() spells it
// ("integer", "character varying(40)", "numeric(10,2)",
// "timestamp(3) with time zone", "integer[]", ...; the short names int4,
// varchar, timestamptz, ... are accepted too): smallint / integer / bigint →
// integer/16/32/64; real / double precision → real/32/64; numeric(p,s) →
// numeric(p,s); boolean; bytea → blob; text, varchar(n), char(n), name →
// text; date, time[tz], timestamp[tz], interval, uuid, json[b]; arrays and
// every other type → other.
ColumnType PgNeutralType(std::string_view format_type);

// The PostgreSQL type of a column holding `type`: bigint for an integer of
// unknown width (smallint / integer when the width says so), double
// precision for a real (real for 32 bits), numeric[(p[,s])], boolean, bytea
// (blob and any), text (varchar(n) / char(n) when bounded), date, time,
// timestamp, timestamp with time zone, interval, uuid, jsonb; text for other.
std::string PgDdlType(const ColumnType& type);

// pg_get_indexdef() text in the neutral model. A b-tree index whose elements
// are columns (with ASC / DESC) or expressions and an optional WHERE maps
// fully; another access method, or INCLUDE / WITH / NULLS NOT DISTINCT
// clauses, give an IndexDef with `unsupported` set.
IndexDef PgNeutralIndex(std::string_view indexdef);

// "CREATE [UNIQUE] INDEX IF NOT EXISTS name ON <qualified> (...)" for
// `index` (expressions parenthesized); kInvalidArgument naming `table` and
// the index when it is unsupported.
Result<std::string> PgIndexSql(const IndexDef& index, const std::string& table,
                               const std::string& qualified);

}  // namespace ferry
