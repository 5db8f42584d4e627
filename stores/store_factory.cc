// OpenStore and RedactUri (declared in stores/store.h): the one place that
// maps a store URI scheme to a Store implementation.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <string_view>

#include "stores/postgresql/pg_dialect.h"
#include "stores/postgresql/pg_store.h"
#include "stores/sqlite/sqlite_dialect.h"
#include "stores/sqlite/sqlite_store.h"
#include "stores/store.h"

namespace ferry {
namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

// Replaces the value of every `password=` parameter (URI query or libpq
// keyword/value form, quoted or not) with ***.
std::string RedactPasswordParams(std::string s) {
  static constexpr std::string_view kKey = "password=";
  size_t pos = 0;
  while (pos < s.size()) {
    size_t found = std::string::npos;
    for (size_t i = pos; i + kKey.size() <= s.size(); ++i) {
      if (StartsWithNoCase(std::string_view(s).substr(i), kKey)) {
        found = i;
        break;
      }
    }
    if (found == std::string::npos) break;
    size_t start = found + kKey.size();
    size_t end = start;
    if (end < s.size() && s[end] == '\'') {  // keyword/value form: 'quoted \' value'
      ++end;
      while (end < s.size() && s[end] != '\'') end += (s[end] == '\\') ? 2 : 1;
      end = std::min(end + 1, s.size());
    } else {
      while (end < s.size() && s[end] != '&' && s[end] != '#' &&
             !std::isspace(static_cast<unsigned char>(s[end]))) {
        ++end;
      }
    }
    s.replace(start, end - start, "***");
    pos = start + 3;
  }
  return s;
}

// How each dialect's declared text maps to the neutral model.
struct Dialect {
  const char* name;
  ColumnType (*neutral_type)(std::string_view declared);
  IndexDef (*neutral_index)(std::string_view sql, const TableSchema& table);
};

const Dialect kDialects[] = {
    {kSqliteDialect, &SqliteNeutralType,
     [](std::string_view sql, const TableSchema& table) {
       return SqliteNeutralIndex(sql, table.columns);
     }},
    {kPgDialect, &PgNeutralType,
     [](std::string_view sql, const TableSchema&) { return PgNeutralIndex(sql); }},
};

}  // namespace

Result<TableSchema> NeutralSchema(const TableSchema& table) {
  const Dialect* dialect = nullptr;
  for (const Dialect& d : kDialects) {
    if (table.dialect == d.name) dialect = &d;
  }
  if (dialect == nullptr) {
    return InvalidArgument(
        fmt::format("table {}: unknown schema dialect '{}'", table.name, table.dialect));
  }
  TableSchema out = table;
  for (Column& c : out.columns) {
    if (!c.neutral) c.neutral = dialect->neutral_type(c.type);
  }
  if (out.indexes.size() != out.index_sql.size()) {
    out.indexes.clear();
    for (const std::string& sql : out.index_sql) {
      out.indexes.push_back(dialect->neutral_index(sql, table));
    }
  }
  return out;
}

std::string RedactUri(const std::string& uri) {
  std::string out = uri;
  size_t scheme_end = out.find("://");
  if (scheme_end != std::string::npos) {
    size_t auth = scheme_end + 3;
    // userinfo ends at the last '@' before the query / fragment, so a
    // password with an unescaped '/' or '@' is still covered.
    size_t stop = out.find_first_of("?#", auth);
    size_t at = out.rfind('@', stop == std::string::npos ? std::string::npos : stop - 1);
    if (at != std::string::npos && at >= auth) {
      size_t colon = out.find(':', auth);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  return RedactPasswordParams(std::move(out));
}

Result<std::string> DialectOf(const std::string& uri) {
  if (StartsWith(uri, "sqlite:")) return std::string(kSqliteDialect);
  if (StartsWith(uri, "postgresql://") || StartsWith(uri, "postgres://")) {
    return std::string(kPgDialect);
  }
  return InvalidArgument(fmt::format(
      "unknown store URI scheme in '{}': use sqlite:PATH or postgresql://...", RedactUri(uri)));
}

Result<TableSchema> DescribeCreateTable(const std::string& target_uri,
                                        const std::string& create_sql) {
  FERRY_ASSIGN_OR_RETURN(std::string dialect, DialectOf(target_uri));
  if (dialect == kSqliteDialect) return SqliteStore::DescribeCreate(create_sql);
  return PgStore::DescribeCreate(target_uri, create_sql);
}

Result<std::vector<std::string>> TargetDdl(const std::string& target_uri,
                                           const TableSchema& table) {
  FERRY_ASSIGN_OR_RETURN(std::string dialect, DialectOf(target_uri));
  if (dialect == kSqliteDialect) return SqliteStore::CreateStatements(table);
  return PgStore::CreateStatements(table, PgQuoteIdent(table.name));
}

Result<std::unique_ptr<Store>> OpenStore(const std::string& uri, StoreRole role) {
  if (StartsWith(uri, "sqlite:")) {
    std::string path = uri.substr(7);
    if (StartsWith(path, "//")) path = path.substr(2);  // sqlite:///abs/path
    if (path.empty()) {
      return InvalidArgument(fmt::format("store URI '{}' has no path: use sqlite:PATH", uri));
    }
    FERRY_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStore> store, SqliteStore::Open(path, role));
    return std::unique_ptr<Store>(std::move(store));
  }
  if (StartsWith(uri, "postgresql://") || StartsWith(uri, "postgres://")) {
    FERRY_ASSIGN_OR_RETURN(std::unique_ptr<PgStore> store, PgStore::Open(uri, role));
    return std::unique_ptr<Store>(std::move(store));
  }
  return InvalidArgument(fmt::format(
      "unknown store URI scheme in '{}': use sqlite:PATH or postgresql://...", RedactUri(uri)));
}

}  // namespace ferry
