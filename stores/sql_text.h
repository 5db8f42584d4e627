// SQL text helpers shared by the stores (with common/text_util.h's
// case-insensitive names and joins): a tokenizer for the DDL statements they read
// (CREATE INDEX). Pure functions; no dialect is assumed beyond the quoting
// forms SQL engines share ('...', "...", `...`, [...]).
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "common/text_util.h"

namespace ferry {

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

// A tiny tokenizer over one DDL statement, for the stores' own dialects.
struct DdlScanner {
  std::string_view s;
  size_t i = 0;

  void Ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool AtEnd() {
    Ws();
    return i >= s.size();
  }
  // Consumes keyword `w` (ASCII case-insensitive, whole word) if it is next.
  bool Word(std::string_view w) {
    Ws();
    if (s.size() - i < w.size() || !IEquals(s.substr(i, w.size()), w)) return false;
    size_t e = i + w.size();
    if (e < s.size() && (std::isalnum(static_cast<unsigned char>(s[e])) || s[e] == '_')) {
      return false;
    }
    i = e;
    return true;
  }
  // An identifier: "quoted", [bracketed], `backticked` or bare. Returns the
  // unquoted name; empty if none.
  std::string Ident() {
    Ws();
    if (i >= s.size()) return "";
    char open = s[i];
    char close = open == '[' ? ']' : open;
    if (open == '"' || open == '[' || open == '`') {
      std::string out;
      for (++i; i < s.size(); ++i) {
        if (s[i] == close) {
          if (close != ']' && i + 1 < s.size() && s[i + 1] == close) {
            out += close;
            ++i;
            continue;
          }
          ++i;
          return out;
        }
        out += s[i];
      }
      return "";
    }
    size_t start = i;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' ||
                            s[i] == '$' || static_cast<unsigned char>(s[i]) >= 0x80)) {
      ++i;
    }
    return std::string(s.substr(start, i - start));
  }
  // ident or schema.ident; returns the last part.
  std::string QualifiedIdent() {
    std::string name = Ident();
    Ws();
    if (i < s.size() && s[i] == '.') {
      ++i;
      name = Ident();
    }
    return name;
  }
  // At a '(' (after white space): the text between it and its matching ')',
  // and moves past the ')'. False (nothing consumed) if there is none.
  bool Parenthesized(std::string_view* body) {
    Ws();
    if (i >= s.size() || s[i] != '(') return false;
    SqlNesting nest;
    for (size_t j = i; j < s.size(); ++j) {
      if (nest.Feed(s[j]) && s[j] == ')' && nest.depth == 0) {
        *body = s.substr(i + 1, j - i - 1);
        i = j + 1;
        return true;
      }
    }
    return false;
  }
  // The rest of the statement, without surrounding white space.
  std::string_view Rest();
};

inline std::string_view TrimWs(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

inline std::string_view DdlScanner::Rest() {
  std::string_view rest = TrimWs(s.substr(std::min(i, s.size())));
  i = s.size();
  return rest;
}

// Splits "a, b COLLATE x DESC, (c+1)" at top-level commas.
inline std::vector<std::string> SplitTopLevel(std::string_view body) {
  std::vector<std::string> out;
  SqlNesting nest;
  size_t start = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    if (nest.Feed(body[i]) && body[i] == ',' && nest.depth == 0) {
      out.emplace_back(body.substr(start, i - start));
      start = i + 1;
    }
  }
  out.emplace_back(body.substr(start));
  return out;
}

}  // namespace ferry
