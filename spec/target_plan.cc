#include "spec/target_plan.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/key_codec.h"
#include "common/text_util.h"
#include "stores/postgresql/pg_dialect.h"
#include "stores/sqlite/sqlite_dialect.h"
#include "stores/table_checks.h"

namespace ferry {
namespace {

// The declared type a column of `table` has in the new store, whose
// dialect is `target_dialect` (the store converts a foreign schema through
// the neutral model).
std::string TypeInTarget(const TableSchema& table, const Column& c,
                         const std::string& target_dialect) {
  if (table.dialect == target_dialect) return c.type;
  const ColumnType neutral = c.neutral.value_or(ColumnType{});
  return target_dialect == kPgDialect ? PgDdlType(neutral) : SqliteDeclaredType(neutral);
}

ColumnType NeutralOf(const std::string& dialect, const std::string& type) {
  return dialect == kPgDialect ? PgNeutralType(type) : SqliteNeutralType(type);
}

// The target of a spec entry without `create`: a column per result column;
// the key from the source key columns carried.
Result<TableSchema> DerivedTarget(const MigrationSpec& spec, const TableSpec& e,
                                  const TableSchema& source,
                                  const std::vector<ProjectedColumn>& projected) {
  TableSchema t;
  t.name = e.target;
  t.dialect = source.dialect;
  if (e.select == "*") {
    // The legacy schema as it is (a rowid table stays one); its own DDL and
    // indexes only under its own name (index names would clash otherwise).
    t = source;
    t.name = e.target;
    if (e.target != source.name) {
      t.create_sql.clear();
      t.index_sql.clear();
      t.indexes.clear();
    }
    return t;
  }
  for (const ProjectedColumn& p : projected) {
    std::optional<ColumnType> neutral;
    if (p.source_cell >= 0) {
      const size_t col = source.rowid_key() ? static_cast<size_t>(p.source_cell) - 1
                                            : static_cast<size_t>(p.source_cell);
      if (!(source.rowid_key() && p.source_cell == 0)) neutral = source.columns[col].neutral;
    }
    if (!neutral) neutral = NeutralOf(source.dialect, p.type);
    t.columns.emplace_back(p.name, p.type, p.not_null, neutral);
  }
  std::vector<int> key_cells;
  if (source.rowid_key()) {
    key_cells.push_back(0);
  } else {
    for (size_t k : source.key_columns) key_cells.push_back(static_cast<int>(k));
  }
  std::vector<std::string> missing;
  for (int cell : key_cells) {
    auto it = std::find_if(projected.begin(), projected.end(),
                           [&](const ProjectedColumn& p) { return p.source_cell == cell; });
    if (it == projected.end()) {
      missing.push_back(source.rowid_key() ? "rowid" : source.columns[cell].name);
    } else {
      t.key_columns.push_back(static_cast<size_t>(it - projected.begin()));
    }
  }
  if (!missing.empty()) {
    return SpecError(
        spec, e,
        fmt::format("no derivable key: the select does not carry the legacy key column{} {} of "
                    "table '{}' (carry {}, under its own or a new name, e.g. `{} AS ...`), and "
                    "there is no create declaring a primary key",
                    missing.size() > 1 ? "s" : "", Join(missing), source.name,
                    missing.size() > 1 ? "them" : "it", missing[0]));
  }
  return t;
}

// Index of the column of `cols` named `name`: exact first, then ASCII
// case-insensitive; -1 if none.
int FindByName(const std::vector<Column>& cols, const std::string& name) {
  for (size_t i = 0; i < cols.size(); ++i) {
    if (cols[i].name == name) return static_cast<int>(i);
  }
  for (size_t i = 0; i < cols.size(); ++i) {
    if (IEquals(cols[i].name, name)) return static_cast<int>(i);
  }
  return -1;
}

// What a batch writes without Lua: the target columns in the select's order.
Result<TableSchema> WriteSchema(const MigrationSpec& spec, const TableSpec& e,
                                const TableSchema& target,
                                const std::vector<ProjectedColumn>& projected) {
  if (target.rowid_key()) return target;  // select "*" of a rowid table: the cells as they are
  TableSchema w = target;
  w.columns.clear();
  w.key_columns.clear();
  w.index_sql.clear();
  w.indexes.clear();
  std::vector<int> from;
  for (const ProjectedColumn& p : projected) {
    const int i = FindByName(target.columns, p.name);
    if (i < 0) {
      std::vector<std::string> names;
      for (const Column& c : target.columns) names.push_back(c.name);
      return SpecError(spec, e,
                       fmt::format("the select produces column '{}', which the target table has "
                                   "not (it has {}); rename it with AS, or add it to create",
                                   p.name, Join(names)));
    }
    if (std::find(from.begin(), from.end(), i) != from.end()) {
      return SpecError(
          spec, e,
          fmt::format("the select produces target column '{}' twice", target.columns[i].name));
    }
    from.push_back(i);
    w.columns.push_back(target.columns[i]);
  }
  for (size_t k : target.key_columns) {
    auto it = std::find(from.begin(), from.end(), static_cast<int>(k));
    if (it == from.end()) {
      return SpecError(
          spec, e,
          fmt::format("the select does not produce the target's key column '{}'; every "
                      "primary-key column must come from the legacy row",
                      target.columns[k].name));
    }
    w.key_columns.push_back(static_cast<size_t>(it - from.begin()));
  }
  return w;
}

Result<TargetPlan> ResolveEntry(const MigrationSpec& spec, const TableSpec& e, Store& source,
                                const std::vector<TableSchema>& source_tables,
                                const std::string& target_dialect, const std::string& target_uri) {
  TargetPlan plan;
  plan.entry = e;
  auto src = std::find_if(source_tables.begin(), source_tables.end(),
                          [&](const TableSchema& t) { return t.name == e.source; });
  if (src == source_tables.end()) {
    std::vector<std::string> names;
    for (const TableSchema& t : source_tables) names.push_back(t.name);
    return SpecError(
        spec, e,
        fmt::format("source table '{}' is not in the legacy store {} (it has: {})", e.source,
                    source.Describe(), names.empty() ? "no tables" : Join(names)));
  }
  if (!src->unsupported.empty()) {
    return SpecError(spec, e, fmt::format("source table '{}' {}", e.source, src->unsupported));
  }
  plan.source = *src;
  // The select alone first, so a problem is pinned on the right key.
  Result<std::vector<ProjectedColumn>> cols =
      source.DescribeProjection(plan.source, Projection{e.select, ""});
  if (!cols.ok()) {
    if (cols.status().code() == Code::kUnavailable) return cols.status();
    return SpecError(spec, e, "select: " + cols.status().message());
  }
  plan.projection = Projection{e.select, e.where};
  if (!e.where.empty()) {
    cols = source.DescribeProjection(plan.source, plan.projection);
    if (!cols.ok()) {
      if (cols.status().code() == Code::kUnavailable) return cols.status();
      return SpecError(spec, e, "where: " + cols.status().message());
    }
  }
  plan.projected = std::move(cols).value();
  for (size_t i = 0; i < plan.projected.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (IEquals(plan.projected[i].name, plan.projected[j].name)) {
        return SpecError(spec, e,
                         fmt::format("the select produces two columns named '{}'; name them "
                                     "apart with AS",
                                     plan.projected[i].name));
      }
    }
  }

  if (!e.create.empty()) {
    Result<TableSchema> created = DescribeCreateTable(target_uri, e.create);
    if (!created.ok()) {
      if (created.status().code() == Code::kUnavailable) return created.status();
      return SpecError(spec, e, "create: " + created.status().message());
    }
    plan.target = std::move(created).value();
    if (plan.target.key_columns.empty()) {
      return SpecError(spec, e,
                       "create declares no primary key: ferry writes each row as an idempotent "
                       "upsert on the target's key (a re-copied range must not duplicate rows); "
                       "declare a PRIMARY KEY");
    }
  } else {
    FERRY_ASSIGN_OR_RETURN(plan.target, DerivedTarget(spec, e, plan.source, plan.projected));
  }

  if (plan.has_lua()) {
    if (plan.target.rowid_key()) {
      return SpecError(spec, e,
                       fmt::format("table '{}' has no primary key (ferry keys it by rowid), and a "
                                   "lua function's rows need one: give a create with a PRIMARY "
                                   "KEY",
                                   e.source));
    }
    plan.write = plan.target;
    plan.write.index_sql.clear();
    plan.write.indexes.clear();
    for (const Column& c : plan.target.columns) {
      plan.lua_output.push_back(
          TargetColumn{c.name, StringAsForType(TypeInTarget(plan.target, c, target_dialect))});
    }
    for (const ProjectedColumn& p : plan.projected) plan.lua_input.push_back(p.name);
    Result<std::unique_ptr<LuaTransform>> lua = MakeTransform(plan);
    if (!lua.ok()) return SpecError(spec, e, lua.status().message());
  } else {
    FERRY_ASSIGN_OR_RETURN(plan.write, WriteSchema(spec, e, plan.target, plan.projected));
  }
  FERRY_RETURN_IF_ERROR(CheckTable(plan.target).status());
  return plan;
}

}  // namespace

std::string RejectReason(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size() && out.size() < 1000) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += c < 0x20 || c == 0x7f ? ' ' : static_cast<char>(c);
      ++i;
      continue;
    }
    const size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (len > 1 && i + len <= s.size() && IsValidUtf8(s.substr(i, len))) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += '?';
      ++i;
    }
  }
  if (i < s.size()) out += "...";
  return out;
}

uint64_t TransformBatch(const TargetPlan& plan, LuaTransform* lua, const RowBatch& read,
                        RowBatch* kept, std::vector<Reject>* rejects) {
  if (lua == nullptr) {
    if (kept != &read) *kept = read;
    return 0;
  }
  const size_t width = plan.write.width();
  const size_t n = read.rows();
  kept->bytes = 0;
  kept->width = width;
  if (kept->cells.size() < n * width) kept->cells.resize(n * width);  // buffers reused
  LuaTransform::AppliedRows applied;
  const Status s = lua->ApplyRows(read.cells.data(), n, kept->cells.data(), &applied);
  if (!s.ok()) {  // not bound: every row fails alike
    for (size_t r = 0; r < n; ++r) applied.failed.emplace_back(r, s.message());
  }
  for (const auto& [r, reason] : applied.failed) {
    rejects->push_back(
        Reject{plan.entry.target, KeyToFullString(read.keys[r]), RejectReason(reason)});
  }
  const size_t k = applied.kept.size();
  kept->cells.resize(k * width);
  kept->keys.resize(k);
  for (size_t i = 0; i < k; ++i) {
    kept->keys[i].assign(read.keys[applied.kept[i]]);
    for (size_t c = 0; c < width; ++c) kept->bytes += PayloadBytes(kept->cells[i * width + c]);
  }
  return applied.dropped;
}

Result<std::unique_ptr<LuaTransform>> MakeTransform(const TargetPlan& plan) {
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<LuaTransform> lua,
                         LuaTransform::Create(plan.entry.lua, "lua"));
  FERRY_RETURN_IF_ERROR(lua->Bind(plan.lua_input, plan.lua_output));
  return lua;
}

Result<std::vector<TargetPlan>> ResolveTargets(const MigrationSpec* spec, Store& source,
                                               const std::vector<TableSchema>& source_tables,
                                               const std::vector<TableSchema>& selected,
                                               const std::string& target_uri) {
  std::vector<TargetPlan> out;
  if (spec == nullptr) {
    for (const TableSchema& t : selected) {
      TargetPlan p;
      p.entry.target = t.name;
      p.entry.source = t.name;
      p.source = t;
      p.target = t;
      p.write = t;
      out.push_back(std::move(p));
    }
  } else {
    FERRY_ASSIGN_OR_RETURN(std::string target_dialect, DialectOf(target_uri));
    for (const TableSpec& e : spec->tables) {
      FERRY_ASSIGN_OR_RETURN(
          TargetPlan p, ResolveEntry(*spec, e, source, source_tables, target_dialect, target_uri));
      out.push_back(std::move(p));
    }
  }
  std::sort(out.begin(), out.end(), [](const TargetPlan& a, const TargetPlan& b) {
    return a.entry.target < b.entry.target;
  });
  return out;
}

}  // namespace ferry
