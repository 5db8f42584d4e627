#include "stores/sqlite/sqlite_dialect.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "common/sqlite_util.h"
#include "stores/sql_text.h"

namespace ferry {

ColumnType SqliteNeutralType(std::string_view declared) {
  const std::string t = ToUpper(declared);
  auto has = [&](const char* s) { return t.find(s) != std::string::npos; };
  ColumnType out;
  if (has("INT")) {
    out.kind = TypeKind::kInteger;
  } else if (has("CHAR") || has("CLOB") || has("TEXT")) {
    out.kind = TypeKind::kText;
  } else if (has("BLOB")) {
    out.kind = TypeKind::kBlob;
  } else if (TrimWs(t).empty()) {
    out.kind = TypeKind::kAny;
  } else if (has("REAL") || has("FLOA") || has("DOUB")) {
    out.kind = TypeKind::kReal;
  } else {
    out.kind = TypeKind::kNumeric;
  }
  return out;
}

std::string SqliteDeclaredType(const ColumnType& type) {
  switch (type.kind) {
    case TypeKind::kAny:
      return "";
    case TypeKind::kBoolean:
    case TypeKind::kInteger:
      return "INTEGER";
    case TypeKind::kReal:
      return "REAL";
    case TypeKind::kNumeric:
      return "NUMERIC";
    case TypeKind::kBlob:
      return "BLOB";
    default:
      return "TEXT";
  }
}

IndexDef SqliteNeutralIndex(std::string_view sql, const std::vector<Column>& columns) {
  IndexDef def;
  auto bad = [&]() {
    IndexDef out;
    out.name = def.name;
    out.unsupported = fmt::format("cannot read its definition: {}", sql.substr(0, 160));
    return out;
  };
  DdlScanner sc{sql};
  if (!sc.Word("create")) return bad();
  def.unique = sc.Word("unique");
  if (!sc.Word("index")) return bad();
  if (sc.Word("if")) {
    if (!sc.Word("not") || !sc.Word("exists")) return bad();
  }
  def.name = sc.QualifiedIdent();
  if (def.name.empty() || !sc.Word("on")) return bad();
  if (sc.QualifiedIdent().empty()) return bad();
  std::string_view body;
  if (!sc.Parenthesized(&body)) return bad();
  for (const std::string& elem : SplitTopLevel(body)) {
    std::string e(TrimWs(elem));
    IndexDef::Part part;
    std::string upper = ToUpper(e);
    for (const char* dir : {" ASC", " DESC"}) {
      size_t n = std::strlen(dir);
      if (upper.size() > n && upper.compare(upper.size() - n, n, dir) == 0) {
        part.descending = std::strcmp(dir, " DESC") == 0;
        e = std::string(TrimWs(std::string_view(e).substr(0, e.size() - n)));
        upper = ToUpper(e);
      }
    }
    size_t coll = upper.find(" COLLATE ");
    if (coll != std::string::npos) e = std::string(TrimWs(std::string_view(e).substr(0, coll)));
    DdlScanner one{e};
    std::string ident = one.Ident();
    if (!ident.empty() && one.AtEnd()) {
      auto it = std::find_if(columns.begin(), columns.end(),
                             [&](const Column& c) { return IEquals(c.name, ident); });
      part.column = it != columns.end() ? it->name : ident;
    } else {
      part.expression = e;
    }
    def.parts.push_back(std::move(part));
  }
  std::string_view rest = sc.Rest();
  if (!rest.empty()) {
    DdlScanner where{rest};
    if (!where.Word("where")) return bad();
    def.where = std::string(where.Rest());
  }
  return def;
}

Result<std::string> SqliteIndexSql(const IndexDef& index, const std::string& table) {
  if (!index.unsupported.empty()) {
    return InvalidArgument(fmt::format("table {}: cannot translate index {} to SQLite: {}", table,
                                       index.name, index.unsupported));
  }
  std::vector<std::string> parts;
  for (const IndexDef::Part& p : index.parts) {
    parts.push_back((p.column.empty() ? p.expression : QuoteIdent(p.column)) +
                    (p.descending ? " DESC" : ""));
  }
  return fmt::format("CREATE {}INDEX IF NOT EXISTS {} ON {} ({}){}", index.unique ? "UNIQUE " : "",
                     QuoteIdent(index.name), QuoteIdent(table), Join(parts),
                     index.where.empty() ? "" : " WHERE " + index.where);
}

}  // namespace ferry
