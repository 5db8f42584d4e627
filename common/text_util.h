// Small ASCII text helpers shared by the stores (identifier and type-name
// handling). Pure functions.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

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

// True if both lists name the same columns in the same order (ASCII
// case-insensitively, as SQL identifiers compare).
inline bool SameColumns(const std::vector<std::string>& have,
                        const std::vector<std::string>& want) {
  return have.size() == want.size() && std::equal(have.begin(), have.end(), want.begin(), IEquals);
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
