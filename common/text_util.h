// Small ASCII text helpers shared by the stores (identifier and type-name
// handling, the existing-table column check). Pure functions.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ferry {

// ASCII case-insensitive equality.
inline bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

inline std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

inline std::string ToUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

inline std::string Join(const std::vector<std::string>& v, std::string_view sep = ", ") {
  std::string out;
  for (const std::string& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

// Ok if an existing target table's columns `have` are the source's `want`
// in the same order (ASCII case-insensitively, as SQL identifiers compare);
// else kFailedPrecondition naming the table and both lists.
inline Status CheckSameColumns(const std::string& table, const std::vector<std::string>& have,
                               const std::vector<std::string>& want) {
  if (have.size() == want.size() && std::equal(have.begin(), have.end(), want.begin(), IEquals)) {
    return Status::Ok();
  }
  return FailedPrecondition(fmt::format(
      "target table {} already exists with columns ({}) but the source has ({}); drop or "
      "rename the target table",
      table, Join(have), Join(want)));
}

// Tracks quoting ('...', "...", `...`, [...]) and parenthesis depth while SQL
// text is fed one character at a time.
struct SqlNesting {
  int depth = 0;
  char quote = 0;
  // Feeds `c`; true if it is outside any quote (so parentheses and commas in
  // it are structural). Parentheses update `depth`.
  bool Feed(char c) {
    if (quote) {
      if (c == quote) quote = 0;
      return false;
    }
    if (c == '\'' || c == '"' || c == '`') {
      quote = c;
    } else if (c == '[') {
      quote = ']';
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      --depth;
    }
    return true;
  }
};

}  // namespace ferry
