#include "spec/sql_text.h"

#include <fmt/format.h>

#include "common/text_util.h"

namespace ferry {
namespace {

struct Token {
  enum Kind { kWord, kQuotedName, kString, kSymbol, kOther };
  Kind kind = kOther;
  std::string text;  // a word as written; a quoted name without its quotes
};

bool IsWordStart(unsigned char c) { return std::isalpha(c) || c == '_' || c >= 0x80; }
bool IsWordChar(unsigned char c) { return std::isalnum(c) || c == '_' || c == '$' || c >= 0x80; }

// Splits SQL text into tokens, skipping whitespace and comments.
class SqlLexer {
 public:
  explicit SqlLexer(std::string_view s) : s_(s) {}

  // The next token into *t; false at the end or on an error (then error()
  // is set).
  bool Next(Token* t) {
    if (!SkipSpaceAndComments()) return false;
    if (pos_ >= s_.size()) return false;
    const unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c == '\'') return Quoted('\'', '\'', Token::kString, t);
    if (c == '"') return Quoted('"', '"', Token::kQuotedName, t);
    if (c == '`') return Quoted('`', '`', Token::kQuotedName, t);
    if (c == '[') return Quoted('[', ']', Token::kQuotedName, t);
    if (c == '$' && DollarQuote(t)) return true;
    if (!error_.empty()) return false;
    if (IsWordStart(c)) {
      const size_t start = pos_;
      while (pos_ < s_.size() && IsWordChar(static_cast<unsigned char>(s_[pos_]))) ++pos_;
      *t = Token{Token::kWord, std::string(s_.substr(start, pos_ - start))};
      return true;
    }
    if (std::isdigit(c)) {
      const size_t start = pos_;
      while (pos_ < s_.size() &&
             (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '.')) {
        ++pos_;
      }
      *t = Token{Token::kOther, std::string(s_.substr(start, pos_ - start))};
      return true;
    }
    ++pos_;
    *t = Token{Token::kSymbol, std::string(1, static_cast<char>(c))};
    return true;
  }

  const std::string& error() const { return error_; }

 private:
  bool SkipSpaceAndComments() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else if (s_.compare(pos_, 2, "--") == 0) {
        const size_t nl = s_.find('\n', pos_);
        pos_ = nl == std::string_view::npos ? s_.size() : nl + 1;
      } else if (s_.compare(pos_, 2, "/*") == 0) {
        const size_t end = s_.find("*/", pos_ + 2);
        if (end == std::string_view::npos) {
          error_ = "has an unterminated /* comment";
          return false;
        }
        pos_ = end + 2;
      } else {
        break;
      }
    }
    return true;
  }

  // A quoted token; the closing quote doubled stands for itself ('it''s').
  bool Quoted(char open, char close, Token::Kind kind, Token* t) {
    std::string text;
    size_t i = pos_ + 1;
    for (;;) {
      if (i >= s_.size()) {
        error_ = fmt::format("has an unterminated {} quote", open);
        return false;
      }
      if (s_[i] == close) {
        if (close != ']' && i + 1 < s_.size() && s_[i + 1] == close) {
          text += close;
          i += 2;
          continue;
        }
        break;
      }
      text += s_[i++];
    }
    pos_ = i + 1;
    *t = Token{kind, std::move(text)};
    return true;
  }

  // PostgreSQL $tag$...$tag$ (tag may be empty). False, without error, if
  // the text at pos_ is no dollar quote opener ($1, $name: parameters).
  bool DollarQuote(Token* t) {
    size_t i = pos_ + 1;
    while (i < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i])) || s_[i] == '_')) {
      ++i;
    }
    if (i >= s_.size() || s_[i] != '$') return false;
    if (i > pos_ + 1 && std::isdigit(static_cast<unsigned char>(s_[pos_ + 1]))) return false;
    const std::string_view tag = s_.substr(pos_, i - pos_ + 1);
    const size_t end = s_.find(tag, i + 1);
    if (end == std::string_view::npos) {
      error_ = fmt::format("has an unterminated {} quote", tag);
      return false;
    }
    *t = Token{Token::kString, std::string(s_.substr(i + 1, end - i - 1))};
    pos_ = end + tag.size();
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

bool IsSymbol(const Token& t, char c) { return t.kind == Token::kSymbol && t.text[0] == c; }
bool IsWord(const Token& t, std::string_view w) {
  return t.kind == Token::kWord && IEquals(t.text, w);
}

// Parenthesis depth bookkeeping shared by both checks.
Status Unbalanced(int depth) {
  return InvalidArgument(depth > 0 ? "has an unclosed '('" : "has a ')' without its '('");
}

}  // namespace

Status CheckSqlFragment(std::string_view fragment) {
  SqlLexer lex(fragment);
  Token t;
  int depth = 0;
  while (lex.Next(&t)) {
    if (IsSymbol(t, ';')) {
      return InvalidArgument("holds a ';': it must be one expression, not statements");
    }
    if (IsSymbol(t, '(')) ++depth;
    if (IsSymbol(t, ')') && --depth < 0) return Unbalanced(depth);
  }
  if (!lex.error().empty()) return InvalidArgument(lex.error());
  if (depth != 0) return Unbalanced(depth);
  return Status::Ok();
}

Status CheckCreateTable(std::string_view create, const std::string& target) {
  SqlLexer lex(create);
  Token t;
  auto next = [&]() -> bool { return lex.Next(&t); };
  auto lex_error = [&]() -> Status {
    return InvalidArgument(lex.error().empty() ? "ends early: write CREATE TABLE name (columns)"
                                               : lex.error());
  };
  if (!next()) return lex.error().empty() ? InvalidArgument("is empty") : lex_error();
  const std::string first = t.text;
  if (!IsWord(t, "CREATE")) {
    return InvalidArgument(
        fmt::format("is not a CREATE TABLE statement (it starts with '{}')", first));
  }
  if (!next()) return lex_error();
  if (IsWord(t, "TEMP") || IsWord(t, "TEMPORARY")) {
    return InvalidArgument(
        "makes a temporary table, which vanishes with its connection; leave out TEMP");
  }
  if (IsWord(t, "UNLOGGED")) {
    return InvalidArgument(
        "makes an UNLOGGED table, which PostgreSQL empties after a crash; leave out UNLOGGED");
  }
  if (IsWord(t, "VIRTUAL")) {
    return InvalidArgument("makes a virtual table; the new store's tables must be plain tables");
  }
  if (!IsWord(t, "TABLE")) {
    return InvalidArgument(
        fmt::format("is not a CREATE TABLE statement (it starts with 'CREATE {}')", t.text));
  }
  if (!next()) return lex_error();
  if (IsWord(t, "IF")) {
    if (!next() || !IsWord(t, "NOT") || !next() || !IsWord(t, "EXISTS") || !next()) {
      return lex.error().empty() ? InvalidArgument("has IF without NOT EXISTS") : lex_error();
    }
  }
  if (t.kind != Token::kWord && t.kind != Token::kQuotedName) {
    return InvalidArgument(
        fmt::format("has no table name after CREATE TABLE (found '{}')", t.text));
  }
  const Token name = t;
  const bool have_next = next();
  if (have_next && IsSymbol(t, '.')) {
    std::string qualified = name.text + ".";
    if (next()) qualified += t.text;
    return InvalidArgument(fmt::format(
        "names the table with a schema ('{}'); leave the schema out: the table goes into the "
        "new store's default schema",
        qualified));
  }
  const bool same = name.kind == Token::kWord ? IEquals(name.text, target) : name.text == target;
  if (!same) {
    return InvalidArgument(fmt::format("makes table '{}', not the target '{}'", name.text, target));
  }
  if (!have_next) {
    return lex.error().empty()
               ? InvalidArgument(fmt::format(
                     "has no column list: write CREATE TABLE {} (column definitions)", target))
               : lex_error();
  }
  if (IsWord(t, "AS")) {
    return InvalidArgument(fmt::format(
        "is CREATE TABLE ... AS SELECT; declare the columns: CREATE TABLE {} (...)", target));
  }
  if (!IsSymbol(t, '(')) {
    return InvalidArgument(fmt::format(
        "has no column list after the table name (found '{}'): write CREATE TABLE {} (...)", t.text,
        target));
  }
  int depth = 1;
  size_t inside = 0;
  bool ended = false;  // a ';' was seen
  while (next()) {
    if (ended) return InvalidArgument("holds more than one statement");
    if (IsSymbol(t, ';')) {
      if (depth != 0) return InvalidArgument("has a ';' inside its column list");
      ended = true;
      continue;
    }
    if (IsSymbol(t, '(')) ++depth;
    if (IsSymbol(t, ')')) {
      if (--depth < 0) return Unbalanced(depth);
      if (depth == 0 && inside == 0) return InvalidArgument("has an empty column list");
    }
    if (depth > 0) ++inside;
  }
  if (!lex.error().empty()) return InvalidArgument(lex.error());
  if (depth != 0) return Unbalanced(depth);
  return Status::Ok();
}

}  // namespace ferry
