// SQL pieces shared by SqliteStore's reads, plans and copies (see
// stores/sqlite/sqlite_internal.h).
#include <fmt/format.h>

#include "common/key_codec.h"
#include "stores/sql_text.h"
#include "stores/sqlite/sqlite_internal.h"
#include "stores/table_checks.h"

namespace ferry {
namespace sqlite_sql {
namespace {

// Decodes an encoded bound into exactly `arity` values.
Result<std::vector<Value>> DecodeBound(std::string_view encoded, size_t arity, bool rowid,
                                       std::string_view what, std::string_view table) {
  auto values = DecodeKey(encoded);
  if (!values.ok()) {
    return InvalidArgument(
        fmt::format("table {}: malformed {} key: {}", table, what, values.status().message()));
  }
  if (values->size() != arity || (rowid && !std::holds_alternative<int64_t>((*values)[0]))) {
    return InvalidArgument(fmt::format("table {}: {} key {} does not fit the table's key", table,
                                       what, KeyToString(encoded)));
  }
  return values;
}

}  // namespace

std::string Params(size_t n, size_t first) {
  if (n == 1) return fmt::format("?{}", first);
  std::string out = "(";
  for (size_t i = 0; i < n; ++i) out += fmt::format("{}?{}", i ? "," : "", first + i);
  return out + ")";
}

KeySql MakeKeySql(const TableSchema& table, const std::string& rowid_alias,
                  const std::string& qualifier) {
  KeySql k;
  std::vector<std::string> cols;
  const std::string q = qualifier.empty() ? "" : qualifier + ".";
  if (table.rowid_key()) {
    cols.push_back(q + QuoteIdent(rowid_alias));
  } else {
    for (size_t pos : table.key_columns) cols.push_back(q + QuoteIdent(table.columns[pos].name));
  }
  k.arity = cols.size();
  k.list = Join(cols);
  k.tuple = cols.size() == 1 ? cols[0] : "(" + k.list + ")";
  return k;
}

std::string CellList(const TableSchema& table, const std::string& rowid_alias) {
  std::vector<std::string> cols;
  for (const std::string& name : CellNames(table, rowid_alias)) cols.push_back(QuoteIdent(name));
  return Join(cols);
}

Result<RangeFilter> MakeRangeFilter(const TableSchema& table, const KeySql& key,
                                    const KeyRange& range, std::string_view after) {
  if (!range.table.empty() && range.table != table.name) {
    return InvalidArgument(
        fmt::format("range of table {} read as table {}", range.table, table.name));
  }
  const bool rowid = table.rowid_key();
  RangeFilter f;
  if (!after.empty() || !range.lo.empty()) {
    const bool exclusive = !after.empty();
    FERRY_ASSIGN_OR_RETURN(std::vector<Value> lo,
                           DecodeBound(exclusive ? after : std::string_view(range.lo), key.arity,
                                       rowid, exclusive ? "cursor" : "lower", table.name));
    f.conditions.push_back(fmt::format(
        "{} {} {}", key.tuple, exclusive ? ">" : ">=", Params(key.arity, f.params.size() + 1)));
    f.params.insert(f.params.end(), lo.begin(), lo.end());
  }
  if (!range.hi.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::vector<Value> hi,
                           DecodeBound(range.hi, key.arity, rowid, "upper", table.name));
    f.conditions.push_back(
        fmt::format("{} < {}", key.tuple, Params(key.arity, f.params.size() + 1)));
    f.params.insert(f.params.end(), hi.begin(), hi.end());
  }
  return f;
}

std::string ProjectionSelect(const TableSchema& table, const std::string& rowid_alias,
                             const Projection& p, const std::string& from,
                             const std::vector<std::string>& conditions) {
  const std::string self = QuoteIdent(table.name);
  const KeySql key = MakeKeySql(table, rowid_alias, self);
  std::vector<std::string> where = conditions;
  if (!p.where.empty()) where.push_back("(\n" + p.where + "\n)");
  return fmt::format("SELECT {}, {} FROM {} AS {}{}", key.list,
                     p.star() ? CellList(table, rowid_alias) : "\n" + p.select + "\n", from, self,
                     WhereClause(where));
}

std::string WhereClause(const std::vector<std::string>& conditions) {
  std::string out;
  for (const std::string& c : conditions) out += (out.empty() ? " WHERE " : " AND ") + c;
  return out;
}

}  // namespace sqlite_sql
}  // namespace ferry
