#include "stores/postgresql/pg_dialect.h"

#include <fmt/format.h>

#include <cstdlib>
#include <vector>

#include "common/pg_util.h"
#include "stores/sql_text.h"

namespace ferry {
namespace {

// "timestamp(3) with time zone" → base "timestamp with time zone", mods {3}.
std::string SplitTypmod(std::string_view type, std::vector<int>* mods) {
  std::string t = ToLower(TrimWs(type));
  size_t open = t.find('(');
  if (open != std::string::npos) {
    size_t close = t.find(')', open);
    if (close != std::string::npos) {
      std::string inside = t.substr(open + 1, close - open - 1);
      for (const std::string& m : SplitTopLevel(inside)) mods->push_back(std::atoi(m.c_str()));
      t = std::string(TrimWs(t.substr(0, open))) + " " + std::string(TrimWs(t.substr(close + 1)));
    }
  }
  std::string out;  // single spaces, none at the ends
  for (char c : t) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool OneOf(const std::string& s, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (s == n) return true;
  }
  return false;
}

}  // namespace

ColumnType PgNeutralType(std::string_view format_type) {
  ColumnType out;
  out.kind = TypeKind::kOther;
  std::string_view trimmed = TrimWs(format_type);
  if (trimmed.size() >= 2 && trimmed.substr(trimmed.size() - 2) == "[]") return out;  // array
  std::vector<int> mods;
  const std::string t = SplitTypmod(trimmed, &mods);
  auto mod = [&](size_t i) { return i < mods.size() ? mods[i] : -1; };
  if (OneOf(t, {"smallint", "int2", "smallserial", "serial2"})) {
    out.kind = TypeKind::kInteger;
    out.bits = 16;
  } else if (OneOf(t, {"integer", "int", "int4", "serial", "serial4"})) {
    out.kind = TypeKind::kInteger;
    out.bits = 32;
  } else if (OneOf(t, {"bigint", "int8", "bigserial", "serial8"})) {
    out.kind = TypeKind::kInteger;
    out.bits = 64;
  } else if (OneOf(t, {"real", "float4"})) {
    out.kind = TypeKind::kReal;
    out.bits = 32;
  } else if (OneOf(t, {"double precision", "float8", "float"})) {
    out.kind = TypeKind::kReal;
    out.bits = t == "float" && mod(0) > 0 && mod(0) <= 24 ? 32 : 64;
  } else if (OneOf(t, {"numeric", "decimal"})) {
    out.kind = TypeKind::kNumeric;
    out.precision = mod(0);
    out.scale = mods.empty() ? -1 : mods.size() == 1 ? 0 : mod(1);
  } else if (OneOf(t, {"boolean", "bool"})) {
    out.kind = TypeKind::kBoolean;
  } else if (t == "bytea") {
    out.kind = TypeKind::kBlob;
  } else if (OneOf(t, {"text", "name"})) {
    out.kind = TypeKind::kText;
  } else if (OneOf(t, {"character varying", "varchar"})) {
    out.kind = TypeKind::kText;
    out.length = mod(0);
  } else if (OneOf(t, {"character", "char", "bpchar", "\"char\""})) {
    out.kind = TypeKind::kText;
    out.fixed_length = true;
    // character without a length is char(1); bpchar without one is unbounded.
    out.length = !mods.empty() ? mod(0) : t == "bpchar" ? -1 : 1;
  } else if (t == "date") {
    out.kind = TypeKind::kDate;
  } else if (OneOf(t, {"time", "time without time zone"})) {
    out.kind = TypeKind::kTime;
    out.precision = mod(0);
  } else if (OneOf(t, {"time with time zone", "timetz"})) {
    out.kind = TypeKind::kTimeTz;
    out.precision = mod(0);
  } else if (OneOf(t, {"timestamp", "timestamp without time zone"})) {
    out.kind = TypeKind::kTimestamp;
    out.precision = mod(0);
  } else if (OneOf(t, {"timestamp with time zone", "timestamptz"})) {
    out.kind = TypeKind::kTimestampTz;
    out.precision = mod(0);
  } else if (t == "interval" || t.rfind("interval ", 0) == 0) {
    out.kind = TypeKind::kInterval;
  } else if (t == "uuid") {
    out.kind = TypeKind::kUuid;
  } else if (OneOf(t, {"json", "jsonb"})) {
    out.kind = TypeKind::kJson;
  }
  return out;
}

std::string PgDdlType(const ColumnType& type) {
  auto frac = [&](const char* base, const char* zone) {
    return type.precision >= 0 ? fmt::format("{}({}) {}", base, type.precision, zone)
                               : fmt::format("{} {}", base, zone);
  };
  switch (type.kind) {
    case TypeKind::kAny:
    case TypeKind::kBlob:
      return "bytea";
    case TypeKind::kBoolean:
      return "boolean";
    case TypeKind::kInteger:
      return type.bits == 16 ? "smallint" : type.bits == 32 ? "integer" : "bigint";
    case TypeKind::kReal:
      return type.bits == 32 ? "real" : "double precision";
    case TypeKind::kNumeric:
      if (type.precision <= 0) return "numeric";
      if (type.scale < 0) return fmt::format("numeric({})", type.precision);
      return fmt::format("numeric({},{})", type.precision, type.scale);
    case TypeKind::kText:
      if (type.length <= 0) return "text";
      return fmt::format("{}({})", type.fixed_length ? "character" : "character varying",
                         type.length);
    case TypeKind::kDate:
      return "date";
    case TypeKind::kTime:
      return frac("time", "without time zone");
    case TypeKind::kTimeTz:
      return frac("time", "with time zone");
    case TypeKind::kTimestamp:
      return frac("timestamp", "without time zone");
    case TypeKind::kTimestampTz:
      return frac("timestamp", "with time zone");
    case TypeKind::kInterval:
      return "interval";
    case TypeKind::kUuid:
      return "uuid";
    case TypeKind::kJson:
      return "jsonb";
    case TypeKind::kOther:
      return "text";
  }
  return "text";
}

IndexDef PgNeutralIndex(std::string_view sql) {
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
  def.name = sc.Ident();
  if (def.name.empty() || !sc.Word("on")) return bad();
  (void)sc.Word("only");
  if (sc.QualifiedIdent().empty()) return bad();
  if (sc.Word("using")) {
    std::string method = sc.Ident();
    if (!IEquals(method, "btree")) {
      def.unsupported = fmt::format(
          "it uses the {} access method; only b-tree indexes translate to another engine", method);
    }
  }
  std::string_view body;
  if (!sc.Parenthesized(&body)) return bad();
  for (const std::string& elem : SplitTopLevel(body)) {
    std::string_view e = TrimWs(elem);
    IndexDef::Part part;
    DdlScanner one{e};
    std::string ident = one.Ident();
    bool descending = false;
    if (!ident.empty() && !one.Word("asc")) descending = one.Word("desc");
    if (!ident.empty() && one.AtEnd()) {
      part.column = ident;
      part.descending = descending;
    } else {
      part.expression = std::string(e);
    }
    def.parts.push_back(std::move(part));
  }
  std::string_view rest = sc.Rest();
  if (!rest.empty()) {
    DdlScanner where{rest};
    if (where.Word("where")) {
      def.where = std::string(where.Rest());
    } else if (def.unsupported.empty()) {
      def.unsupported = fmt::format(
          "its definition has clauses another engine does not recreate: {}", rest.substr(0, 160));
    }
  }
  return def;
}

Result<std::string> PgIndexSql(const IndexDef& index, const std::string& table,
                               const std::string& qualified) {
  if (!index.unsupported.empty()) {
    return InvalidArgument(fmt::format("table {}: cannot translate index {} to PostgreSQL: {}",
                                       table, index.name, index.unsupported));
  }
  std::vector<std::string> parts;
  for (const IndexDef::Part& p : index.parts) {
    parts.push_back((p.column.empty() ? "(" + p.expression + ")" : PgQuoteIdent(p.column)) +
                    (p.descending ? " DESC" : ""));
  }
  return fmt::format("CREATE {}INDEX IF NOT EXISTS {} ON {} ({}){}", index.unique ? "UNIQUE " : "",
                     PgQuoteIdent(index.name), qualified, Join(parts),
                     index.where.empty() ? "" : " WHERE " + index.where);
}

}  // namespace ferry
