// The migration spec (DESIGN.md "Migration spec: moving data between
// formats"): a TOML file saying which target tables to fill from which
// legacy tables, and how.
//
//   from_version = 1            # optional
//   to_version = 2              # optional
//   [[table]]
//   target = "accounts"         # required, non-empty
//   source = "users"            # default: target
//   select = "id, lower(email) AS email"   # default: *
//   where  = "deleted_at IS NULL"          # optional
//   create = "CREATE TABLE accounts (...)" # optional
//   lua    = '''return function(row) ... end'''  # optional
//
// Parsing validates everything that can be checked without a store, and
// refuses the first problem with kInvalidArgument (exit 2), one line:
//   FILE[:LINE]: [[table]] #N (target "NAME"): PROBLEM
// (the entry part only for problems inside an entry; LINE where toml++
// knows it). Checked: TOML syntax; unknown keys (top level and in an
// entry); value types; a missing or empty `target`; two entries with the
// same target (ASCII case-insensitively: "two sources for one target");
// empty `source`/`select`/`where`/`create`/`lua` (leave the key out for the
// default); versions that are not non-negative integers or from >= to; no
// entries at all; `select`/`where` with unbalanced quotes, comments or
// parentheses or a `;` (sql_text.h); a `create` that is not one CREATE
// TABLE for the target (sql_text.h); Lua that does not compile, fails or
// exceeds its limits while the chunk runs, reads a global the sandbox does
// not have anywhere in its code, or does not return a function
// (lua_transform.h). What needs a store (a `select` naming a missing
// column, a `create` the target store cannot parse, a derivable key) is
// checked when the stores are opened.
//
// String values are kept with surrounding whitespace trimmed (except
// `target` and `source`, which are table names as written).
//
// Thread safety: pure functions; MigrationSpec is a plain value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ferry {

struct TableSpec {
  std::string target;
  std::string source;        // = target when the file leaves it out
  std::string select = "*";  // the legacy store's dialect
  std::string where;         // empty: every row
  std::string create;        // empty: derived from the projection
  std::string lua;           // empty: no row function
  int index = 0;             // 1-based position among the file's [[table]] entries
  int line = 0;              // line of the entry in the file; 0 when unknown

  // `[[table]] #2 (target "accounts")`.
  std::string Label() const;
  bool operator==(const TableSpec& o) const;
};

struct MigrationSpec {
  std::string file;  // the name messages use (the path as given)
  std::optional<int64_t> from_version;
  std::optional<int64_t> to_version;
  std::vector<TableSpec> tables;  // in file order

  // The spec as TOML in one canonical form: versions when given, then the
  // entries sorted by target, each with every key (defaults filled in;
  // where/create/lua only when set), strings quoted one fixed way. Parsing
  // it gives an equal spec; two files that differ only in layout, comments,
  // key or entry order, or defaults written out have the same text.
  std::string CanonicalText() const;
  // Hex XXH3-128 of CanonicalText(): 32 lowercase hex digits.
  std::string Digest() const;
  // The entry for `target` (exact name), or nullptr.
  const TableSpec* Find(std::string_view target) const;
};

// A problem with one entry, in the one-line form above (for checks done
// later, e.g. when the stores are opened): "FILE:LINE: [[table]] #N (target
// "NAME"): PROBLEM".
Status SpecError(const MigrationSpec& spec, const TableSpec& table, std::string_view problem);

// Parses and validates `toml` (named `name` in messages) into *out. Never
// crashes, whatever the input (a libFuzzer entry point). *out is
// unspecified on error.
Status ParseSpecText(std::string_view toml, const std::string& name, MigrationSpec* out);

// Reads and parses the file at `path` (named `path` in messages).
// kInvalidArgument when it cannot be read.
Result<MigrationSpec> LoadSpecFile(const std::string& path);

// One line naming the first difference between the spec recorded in a plan
// and the spec given now, e.g. "table 'accounts': select differs ('id,
// email' vs 'id, lower(email) AS email')" (recorded value first), plus "(and
// N more differences)" when there are more; empty when they are the same
// (same CanonicalText). Long or multi-line values are shown by their first
// differing line, shortened.
std::string SpecDifference(const MigrationSpec& recorded, const MigrationSpec& given);

struct VersionPair {
  int64_t from = 1;
  int64_t to = 2;
};

// The versions a migration with `spec` goes between. A flag is the value
// of --from-version / --to-version when the operator gave it (nullopt when
// not). Each version is the flag's, else the spec's, else `defaults`'. A
// version given both by a flag and by the spec must agree:
// kInvalidArgument naming both otherwise; also when the result is not
// 0 <= from < to.
Result<VersionPair> CheckSpecVersions(const MigrationSpec& spec, std::optional<int64_t> from_flag,
                                      std::optional<int64_t> to_flag,
                                      VersionPair defaults = VersionPair());

}  // namespace ferry
