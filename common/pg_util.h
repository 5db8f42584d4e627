// Thin RAII over libpq, shared by PgStore and the tests' PostgreSQL helpers.
// Errors come back as Status, never exceptions.
//
// Thread safety: a PgConn and its results belong to one thread.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ferry {

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using PgConnPtr = std::unique_ptr<PGconn, PgConnDeleter>;

// The password a libpq URI or conninfo carries ("" if none), to scrub it from
// any message built from server or libpq text.
std::string PgPasswordOf(const std::string& conninfo);

// `text` with every occurrence of `secret` replaced by "***" (no-op for "").
std::string Scrub(std::string text, const std::string& secret);

// Maps a failed libpq call to a Status, by SQLSTATE (see README, "PostgreSQL"):
//   no SQLSTATE / connection bad / 08xxx / 57P01-57P03 / 53xxx / 40001 /
//   40P01 / 55P03 / 57014                       → kUnavailable
//   23xxx (constraints), 22xxx (data), 21000     → kPermanent
//   42xxx (undefined table, syntax, privilege)   → kInvalidArgument
//   anything else                                → kPermanent
// `what` says what ferry was doing ("write table t"). The message holds the
// server's primary message, detail and SQLSTATE; never the conninfo.
Status PgError(PGconn* conn, const PGresult* res, std::string_view what);

// The Code PgError would choose for `sqlstate` (exposed for tests).
Code PgCodeForSqlstate(std::string_view sqlstate);

// Connects to `uri` (a libpq URI or conninfo; PGPASSFILE and the rest of
// libpq's environment apply) as `application_name`, client_encoding UTF8,
// with TCP keepalives and a TCP user timeout of `io_timeout_ms` (0: libpq's
// defaults) so a connection to a partitioned server fails instead of
// hanging. kUnavailable when the server cannot be reached (retry);
// kInvalidArgument for a malformed URI, failed authentication or a missing
// database. Messages never hold the password.
Result<PgConnPtr> PgConnect(const std::string& uri, const std::string& application_name,
                            int io_timeout_ms = 0);

// Quotes an identifier for PostgreSQL: "na""me".
std::string PgQuoteIdent(std::string_view name);

// Quotes a string literal for PostgreSQL: 'it''s' (standard_conforming_strings on).
std::string PgQuoteLiteral(std::string_view s);

}  // namespace ferry
