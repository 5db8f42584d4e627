// Light syntactic checks of the SQL a migration spec carries, done while the
// spec is validated (before any store is opened). The store that runs the
// SQL parses it for real later; these checks catch what would otherwise
// change the meaning of the statement ferry wraps around a fragment (a `;`
// ending it early, an unterminated quote or comment, unbalanced
// parentheses) and a `create` that is not a CREATE TABLE for its target.
//
// The scanner knows SQL string literals ('...', with '' inside), quoted
// identifiers ("...", `...`, [...]), PostgreSQL dollar quotes ($$...$$,
// $tag$...$tag$), line comments (-- to the end of the line) and block
// comments (/* ... */). A fragment may hold comments: embed it on lines of
// its own (e.g. "WHERE (\n<where>\n)") so a line comment ends inside it.
//
// Messages are the problem only ("has an unterminated ' quote"); the caller
// names the spec file, the entry and the key. Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace ferry {

// A select list or a where condition: ok if its quotes, comments and
// parentheses are balanced and no `;` stands outside them. kInvalidArgument
// otherwise; the message starts with "has" or "holds".
Status CheckSqlFragment(std::string_view fragment);

// `create` must be exactly one statement
//   CREATE TABLE [IF NOT EXISTS] <name> ( <something> ) [<table options>] [;]
// whose <name> (bare: compared ASCII case-insensitively; quoted: exactly) is
// `target`, without a schema, and not TEMP/TEMPORARY/UNLOGGED/VIRTUAL or
// AS SELECT. The column list itself is not checked. kInvalidArgument
// otherwise, with a message that starts with "is", "makes", "names", "has"
// or "holds".
Status CheckCreateTable(std::string_view create, const std::string& target);

}  // namespace ferry
