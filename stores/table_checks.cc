#include "stores/table_checks.h"

#include <fmt/format.h>

#include <algorithm>

#include "stores/sql_text.h"

namespace ferry {

bool IsMetaTable(std::string_view name) {
  return IEquals(name, kMetaTable) || IEquals(name, kRejectsTable);
}

bool IsReservedTable(std::string_view name) {
  return IsMetaTable(name) || IEquals(name, kChangesTable);
}

Status CheckNotMetaTable(std::string_view name) {
  if (!IsMetaTable(name)) return Status::Ok();
  return InvalidArgument(fmt::format(
      "table {} is one of ferry's reserved metadata tables ({}, {}); it is never copied or "
      "written as user data",
      name, kMetaTable, kRejectsTable));
}

Status CheckNoMetaTable(const std::vector<TableSchema>& tables) {
  for (const TableSchema& t : tables) FERRY_RETURN_IF_ERROR(CheckNotMetaTable(t.name));
  return Status::Ok();
}

std::string RowidAlias(const std::vector<Column>& columns) {
  for (const char* alias : {"rowid", "_rowid_", "oid"}) {
    bool shadowed = std::any_of(columns.begin(), columns.end(),
                                [&](const Column& c) { return IEquals(c.name, alias); });
    if (!shadowed) return alias;
  }
  return "";
}

Status RowidShadowedError(std::string_view table) {
  return InvalidArgument(fmt::format(
      "table {} has no primary key and its columns shadow rowid, _rowid_ and oid; ferry "
      "cannot key it (give it a primary key)",
      table));
}

Result<std::string> CheckTable(const TableSchema& table) {
  FERRY_RETURN_IF_ERROR(CheckNotMetaTable(table.name));
  for (size_t pos : table.key_columns) {
    if (pos >= table.columns.size()) {
      return InvalidArgument(
          fmt::format("table {}: key column position {} is out of range", table.name, pos));
    }
  }
  if (!table.rowid_key()) return std::string();
  std::string alias = RowidAlias(table.columns);
  if (alias.empty()) return RowidShadowedError(table.name);
  return alias;
}

Result<std::string> CheckBatch(const TableSchema& table, const RowBatch& batch) {
  FERRY_ASSIGN_OR_RETURN(std::string alias, CheckTable(table));
  const size_t width = table.width();
  if (batch.width != width || batch.cells.size() != batch.rows() * width) {
    return InvalidArgument(
        fmt::format("table {}: batch of width {} ({} cells, {} rows) does not "
                    "fit the table's {} cells per row",
                    table.name, batch.width, batch.cells.size(), batch.rows(), width));
  }
  return alias;
}

std::vector<std::string> CellNames(const TableSchema& table, const std::string& alias) {
  std::vector<std::string> out;
  if (table.rowid_key()) out.push_back(alias);
  for (const Column& c : table.columns) out.push_back(c.name);
  return out;
}

Status CheckSameColumns(const std::string& table, const std::vector<std::string>& have,
                        const std::vector<std::string>& want) {
  if (have.size() == want.size() &&
      std::equal(have.begin(), have.end(), want.begin(),
                 [](const std::string& a, const std::string& b) { return IEquals(a, b); })) {
    return Status::Ok();
  }
  return FailedPrecondition(fmt::format(
      "target table {} already exists with columns ({}) but the source has ({}); drop or "
      "rename the target table",
      table, Join(have), Join(want)));
}

}  // namespace ferry
