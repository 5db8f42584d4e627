// The preconditions every store applies to what it is handed, in one place:
// the reserved metadata table, key-column positions, the rowid alias of a
// table without a primary key, the width of a batch, and an existing target
// table's columns. Each store calls these before it builds any SQL, so the
// same bad input fails the same way (kInvalidArgument / kFailedPrecondition,
// one line naming the table) on every engine.
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/value.h"
#include "stores/store.h"

namespace ferry {

// True if `name` is a reserved metadata table (kMetaTable, kRejectsTable),
// compared ASCII case-insensitively as SQL identifiers are.
bool IsMetaTable(std::string_view name);

// True for every table ferry keeps in a store for itself (the metadata
// table, the online capture's change table): never listed as user tables.
bool IsReservedTable(std::string_view name);

// kInvalidArgument if `name` is a reserved metadata table: it is never
// listed, read, planned, created or written as user data.
Status CheckNotMetaTable(std::string_view name);

// CheckNotMetaTable for every table of a CreateSchema call.
Status CheckNoMetaTable(const std::vector<TableSchema>& tables);

// The column name a rowid-keyed table's rowid is read and written as: the
// first of rowid, _rowid_, oid that is not (case-insensitively) one of
// `columns`; empty if all three are shadowed.
std::string RowidAlias(const std::vector<Column>& columns);

// The error for a table without a primary key whose columns shadow every
// rowid alias (kInvalidArgument naming the table).
Status RowidShadowedError(std::string_view table);

// What reading, planning, creating or writing `table` needs of its schema:
// not the metadata table, key-column positions inside the column list, and
// for a table without a primary key an unshadowed rowid alias. Returns the
// alias ("" for a table with a primary key).
Result<std::string> CheckTable(const TableSchema& table);

// CheckTable, then: `batch` has table.width() cells per row and as many
// cells as rows need. Returns the rowid alias as CheckTable does.
Result<std::string> CheckBatch(const TableSchema& table, const RowBatch& batch);

// The names of a row's cells in order: [rowid alias,] every column. `alias`
// as CheckTable returns it.
std::vector<std::string> CellNames(const TableSchema& table, const std::string& alias);

// Ok if an existing target table's columns `have` are the source's `want`
// in the same order (ASCII case-insensitively, as SQL identifiers compare);
// else kFailedPrecondition naming the table and both lists.
Status CheckSameColumns(const std::string& table, const std::vector<std::string>& have,
                        const std::vector<std::string>& want);

}  // namespace ferry
