#include "stores/row_compare.h"

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/key_codec.h"

namespace ferry {
namespace {

// A number written as text: the whole string must parse.
std::optional<double> ParseNumber(const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double d = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || errno == ERANGE) return std::nullopt;
  return d;
}

std::optional<double> AsNumber(const Value& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* t = std::get_if<Text>(&v)) return ParseNumber(t->bytes);
  if (const auto* b = std::get_if<Blob>(&v)) return ParseNumber(b->bytes);
  return std::nullopt;
}

}  // namespace

std::string CellBytes(const Value& v) {
  std::string out;
  AppendKeyElement(v, &out);
  return out;
}

bool SameValueAcrossEngines(const Value& x, const Value& y) {
  if (x.index() == 0 || y.index() == 0) return false;  // NULL only equals NULL (exact)
  const auto* tx = std::get_if<Text>(&x);
  const auto* bx = std::get_if<Blob>(&x);
  const auto* ty = std::get_if<Text>(&y);
  const auto* by = std::get_if<Blob>(&y);
  if ((tx || bx) && (ty || by)) return (tx ? tx->bytes : bx->bytes) == (ty ? ty->bytes : by->bytes);
  const auto* ix = std::get_if<int64_t>(&x);
  const auto* iy = std::get_if<int64_t>(&y);
  // An integer and text: the same decimal digits, or (text '007', '7.0')
  // a number of the same value where a double holds the integer exactly.
  if ((ix && (ty || by)) || (iy && (tx || bx))) {
    const int64_t i = ix ? *ix : *iy;
    const std::string& text = ix ? (ty ? ty->bytes : by->bytes) : (tx ? tx->bytes : bx->bytes);
    if (text == std::to_string(i)) return true;
    std::optional<double> d = ParseNumber(text);
    return d && std::fabs(static_cast<double>(i)) <= 9007199254740992.0 &&
           *d == static_cast<double>(i);
  }
  std::optional<double> nx = AsNumber(x), ny = AsNumber(y);
  return nx && ny && (*nx == *ny || (std::isnan(*nx) && std::isnan(*ny)));
}

std::string CellText(const Value& v) {
  const std::string s = KeyToString(EncodeKey(&v, 1));  // "(...)"
  return s.size() >= 2 ? s.substr(1, s.size() - 2) : s;
}

CellMatch CompareCell(const Value& x, const Value& y, bool cross_engine) {
  // Equal key encodings; reals by their bits (so -0.0 and 0.0 differ, NaN
  // equals itself), like the digest.
  if (x.index() != 2 && x.index() == y.index() && x == y) return CellMatch::kEqual;
  if (CellBytes(x) == CellBytes(y)) return CellMatch::kEqual;
  if (cross_engine && SameValueAcrossEngines(x, y)) return CellMatch::kConverted;
  return CellMatch::kDifferent;
}

std::optional<size_t> FirstDifferentCell(const Value* x, const Value* y, size_t width,
                                         bool cross_engine, uint64_t* converted) {
  uint64_t conv = 0;
  for (size_t c = 0; c < width; ++c) {
    switch (CompareCell(x[c], y[c], cross_engine)) {
      case CellMatch::kEqual:
        break;
      case CellMatch::kConverted:
        ++conv;
        break;
      case CellMatch::kDifferent:
        return c;
    }
  }
  if (converted) *converted += conv;
  return std::nullopt;
}

namespace {

void AppendLength(size_t n, std::string* out) {
  const uint32_t len = static_cast<uint32_t>(n);
  char b[4] = {static_cast<char>(len >> 24), static_cast<char>(len >> 16),
               static_cast<char>(len >> 8), static_cast<char>(len)};
  out->append(b, 4);
}

void AppendU64(uint64_t v, std::string* out) {
  char b[8];
  for (int i = 7; i >= 0; --i, v >>= 8) b[i] = static_cast<char>(v & 0xff);
  out->append(b, 8);
}

}  // namespace

void AppendExactNull(std::string* out) { out->push_back('n'); }

void AppendExactInt(int64_t v, std::string* out) {
  out->push_back('i');
  AppendU64(static_cast<uint64_t>(v), out);
}

void AppendExactReal(double v, std::string* out) {
  uint64_t bits;
  static_assert(sizeof bits == sizeof v);
  std::memcpy(&bits, &v, sizeof bits);
  out->push_back('r');
  AppendU64(bits, out);
}

void AppendExactBytes(char tag, std::string_view bytes, std::string* out) {
  out->push_back(tag);
  AppendLength(bytes.size(), out);
  out->append(bytes);
}

void AppendExactCell(const Value& v, std::string* out) {
  switch (v.index()) {
    case 1:
      AppendExactInt(std::get<int64_t>(v), out);
      break;
    case 2:
      AppendExactReal(std::get<double>(v), out);
      break;
    case 3:
      AppendExactBytes('t', std::get<Text>(v).bytes, out);
      break;
    case 4:
      AppendExactBytes('b', std::get<Blob>(v).bytes, out);
      break;
    default:
      AppendExactNull(out);
  }
}

void AppendValueBytes(std::string_view bytes, std::string* out) {
  out->push_back('v');
  AppendLength(bytes.size(), out);
  out->append(bytes);
}

void AppendValueInt(int64_t v, std::string* out) {
  char buf[24];
  const auto r = fmt::format_to_n(buf, sizeof buf, "{}", v);
  AppendValueBytes(std::string_view(buf, r.size), out);
}

void AppendValueReal(double v, std::string* out) {
  char buf[40];
  const auto r = fmt::format_to_n(buf, sizeof buf, "{}", v);
  AppendValueBytes(std::string_view(buf, std::min(r.size, sizeof buf)), out);
}

void AppendValueCell(const Value& v, std::string* out) {
  switch (v.index()) {
    case 1:
      AppendValueInt(std::get<int64_t>(v), out);
      break;
    case 2:
      AppendValueReal(std::get<double>(v), out);
      break;
    case 3:
      AppendValueBytes(std::get<Text>(v).bytes, out);
      break;
    case 4:
      AppendValueBytes(std::get<Blob>(v).bytes, out);
      break;
    default:
      out->push_back('n');
  }
}

void AppendRowBytes(DigestMode mode, std::string_view key, const Value* row, size_t width,
                    std::string* out) {
  out->append(key);
  for (size_t c = 0; c < width; ++c) {
    if (mode == DigestMode::kExact) {
      AppendExactCell(row[c], out);
    } else {
      AppendValueCell(row[c], out);
    }
  }
}

}  // namespace ferry
