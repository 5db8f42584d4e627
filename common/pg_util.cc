#include "common/pg_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace ferry {

std::string PgPasswordOf(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (err) PQfreemem(err);
  if (!opts) return "";
  std::string out;
  for (PQconninfoOption* o = opts; o->keyword; ++o) {
    if (std::strcmp(o->keyword, "password") == 0 && o->val) out = o->val;
  }
  PQconninfoFree(opts);
  return out;
}

std::string Scrub(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  size_t pos = 0;
  while ((pos = text.find(secret, pos)) != std::string::npos) {
    text.replace(pos, secret.size(), "***");
    pos += 3;
  }
  return text;
}

Code PgCodeForSqlstate(std::string_view s) {
  if (s.size() != 5) return Code::kUnavailable;
  std::string_view cls = s.substr(0, 2);
  if (cls == "08" || cls == "53" || s == "57P01" || s == "57P02" || s == "57P03" || s == "40001" ||
      s == "40P01" || s == "55P03" || s == "57014" || s == "58030") {
    return Code::kUnavailable;
  }
  if (cls == "23" || cls == "22" || s == "21000") return Code::kPermanent;
  if (cls == "42") return Code::kInvalidArgument;
  return Code::kPermanent;
}

namespace {
std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
}  // namespace

Status PgError(PGconn* conn, const PGresult* res, std::string_view what) {
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const bool lost = conn == nullptr || PQstatus(conn) == CONNECTION_BAD;
  std::string msg;
  if (res && PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)) {
    msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (const char* d = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL)) {
      msg += std::string(" (") + d + ")";
    }
  } else if (conn) {
    msg = Trim(PQerrorMessage(conn));
  }
  if (msg.empty()) msg = "unknown error";
  Code code = state ? PgCodeForSqlstate(state) : Code::kUnavailable;
  if (lost) code = Code::kUnavailable;
  std::string text = fmt::format("{}: {}{}{}", what, lost ? "connection lost: " : "", msg,
                                 state ? fmt::format(" (SQLSTATE {})", state) : "");
  return Status(code, std::move(text));
}

Result<PgConnPtr> PgConnect(const std::string& uri, const std::string& application_name,
                            int io_timeout_ms) {
  std::vector<std::string> keys, vals;
  if (!std::getenv("PGCONNECT_TIMEOUT")) {
    keys.push_back("connect_timeout");  // the URI may override it
    vals.push_back("10");
  }
  if (io_timeout_ms > 0) {
    const int idle_s = std::max(1, io_timeout_ms / 3000);
    for (auto [k, v] : {std::pair<const char*, std::string>{"keepalives", "1"},
                        {"keepalives_idle", std::to_string(idle_s)},
                        {"keepalives_interval", "1"},
                        {"keepalives_count", "3"},
                        {"tcp_user_timeout", std::to_string(io_timeout_ms)}}) {
      keys.push_back(k);
      vals.push_back(v);
    }
  }
  keys.push_back("dbname");  // expanded: the URI's own settings win over the ones above
  vals.push_back(uri);
  keys.push_back("application_name");
  vals.push_back(application_name);
  keys.push_back("client_encoding");
  vals.push_back("UTF8");
  std::vector<const char*> k, v;
  for (size_t i = 0; i < keys.size(); ++i) {
    k.push_back(keys[i].c_str());
    v.push_back(vals[i].c_str());
  }
  k.push_back(nullptr);
  v.push_back(nullptr);
  PgConnPtr conn(PQconnectdbParams(k.data(), v.data(), 1));
  if (!conn) return Unavailable("cannot connect: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    std::string msg = Trim(PQerrorMessage(conn.get()));
    for (char& c : msg) {
      if (c == '\n') c = ' ';
    }
    msg = Scrub(msg, PgPasswordOf(uri));
    const bool bad_input = msg.find("authentication failed") != std::string::npos ||
                           msg.find("does not exist") != std::string::npos ||
                           msg.find("no password supplied") != std::string::npos ||
                           msg.find("invalid") != std::string::npos ||
                           msg.find("not permitted") != std::string::npos ||
                           msg.find("missing \"=\"") != std::string::npos;
    return Status(bad_input ? Code::kInvalidArgument : Code::kUnavailable,
                  "cannot connect: " + msg);
  }
  // Server notices ("already exists, skipping") are not errors: drop them.
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);
  return conn;
}

std::string PgQuoteIdent(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string PgQuoteLiteral(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

}  // namespace ferry
