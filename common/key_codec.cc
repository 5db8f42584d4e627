#include "common/key_codec.h"

#include <fmt/format.h>

#include <cstring>

namespace ferry {
namespace {

constexpr unsigned char kNull = 0x05;
constexpr unsigned char kInt = 0x10;
constexpr unsigned char kReal = 0x20;
constexpr unsigned char kText = 0x30;
constexpr unsigned char kBlob = 0x40;

void AppendTagged(unsigned char tag, uint64_t v, std::string* out) {
  char buf[9];
  buf[0] = static_cast<char>(tag);
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<char>((v >> (56 - 8 * i)) & 0xff);
  out->append(buf, sizeof buf);
}

uint64_t ReadBigEndian(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

// tag, the bytes with each 0x00 escaped as 0x00 0xFF, then 0x00.
void AppendEscaped(unsigned char tag, std::string_view bytes, std::string* out) {
  out->push_back(static_cast<char>(tag));
  const char* p = bytes.data();
  const char* end = p + bytes.size();
  while (p < end) {
    const char* zero = static_cast<const char*>(std::memchr(p, 0, static_cast<size_t>(end - p)));
    if (zero == nullptr) {
      out->append(p, static_cast<size_t>(end - p));
      break;
    }
    out->append(p, static_cast<size_t>(zero - p) + 1);
    out->push_back(static_cast<char>(0xff));
    p = zero + 1;
  }
  out->push_back('\0');
}

}  // namespace

void AppendKeyNull(std::string* out) { out->push_back(static_cast<char>(kNull)); }

void AppendKeyInt(int64_t v, std::string* out) {
  AppendTagged(kInt, static_cast<uint64_t>(v) ^ (uint64_t{1} << 63), out);
}

void AppendKeyReal(double d, std::string* out) {
  if (d == 0.0) d = 0.0;  // -0.0 sorts equal to 0.0 in SQLite
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  bits = (bits & (uint64_t{1} << 63)) ? ~bits : bits | (uint64_t{1} << 63);
  AppendTagged(kReal, bits, out);
}

void AppendKeyText(std::string_view bytes, std::string* out) { AppendEscaped(kText, bytes, out); }

void AppendKeyBlob(std::string_view bytes, std::string* out) { AppendEscaped(kBlob, bytes, out); }

void AppendKeyElement(const Value& v, std::string* out) {
  switch (v.index()) {
    case 0:
      AppendKeyNull(out);
      break;
    case 1:
      AppendKeyInt(std::get<int64_t>(v), out);
      break;
    case 2:
      AppendKeyReal(std::get<double>(v), out);
      break;
    case 3:
      AppendKeyText(std::get<Text>(v).bytes, out);
      break;
    case 4:
      AppendKeyBlob(std::get<Blob>(v).bytes, out);
      break;
  }
}

std::string EncodeKey(const Value* values, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) AppendKeyElement(values[i], &out);
  return out;
}

Result<std::vector<Value>> DecodeKey(std::string_view encoded) {
  std::vector<Value> out;
  const auto* p = reinterpret_cast<const unsigned char*>(encoded.data());
  const size_t n = encoded.size();
  if (n == 0) return InvalidArgument("empty key");
  size_t i = 0;
  while (i < n) {
    unsigned char tag = p[i++];
    switch (tag) {
      case kNull:
        out.emplace_back(Null{});
        break;
      case kInt:
      case kReal: {
        if (n - i < 8) return InvalidArgument("truncated number in key");
        uint64_t bits = ReadBigEndian(p + i);
        i += 8;
        if (tag == kInt) {
          out.emplace_back(static_cast<int64_t>(bits ^ (uint64_t{1} << 63)));
        } else {
          bits = (bits & (uint64_t{1} << 63)) ? bits & ~(uint64_t{1} << 63) : ~bits;
          double d;
          std::memcpy(&d, &bits, sizeof d);
          out.emplace_back(d);
        }
        break;
      }
      case kText:
      case kBlob: {
        std::string bytes;
        bool terminated = false;
        while (i < n) {
          unsigned char c = p[i++];
          if (c != 0) {
            bytes.push_back(static_cast<char>(c));
            continue;
          }
          if (i < n && p[i] == 0xff) {
            bytes.push_back('\0');
            ++i;
            continue;
          }
          terminated = true;
          break;
        }
        if (!terminated) return InvalidArgument("unterminated string in key");
        if (tag == kText) {
          out.emplace_back(Text{std::move(bytes)});
        } else {
          out.emplace_back(Blob{std::move(bytes)});
        }
        break;
      }
      default:
        return InvalidArgument(fmt::format("unknown key element tag 0x{:02x}", tag));
    }
  }
  return out;
}

namespace {

// KeyToString's form; text longer than max_text bytes and blobs longer
// than max_blob bytes are cut with "...". `exact` doubles quotes inside text
// and prints reals with a decimal point or exponent (3.0, not 3).
std::string KeyText(std::string_view encoded, size_t max_text, size_t max_blob, bool exact) {
  if (encoded.empty()) return "";
  auto decoded = DecodeKey(encoded);
  if (!decoded.ok()) return "<malformed key>";
  std::string out = "(";
  bool first = true;
  for (const Value& v : *decoded) {
    if (!first) out += ", ";
    first = false;
    switch (v.index()) {
      case 0:
        out += "NULL";
        break;
      case 1:
        out += std::to_string(std::get<int64_t>(v));
        break;
      case 2: {
        const std::string d = fmt::format("{}", std::get<double>(v));
        out += d;
        if (exact && d.find_first_of(".eni") == std::string::npos) out += ".0";
        break;
      }
      case 3: {
        const std::string& s = std::get<Text>(v).bytes;
        out += '\'';
        for (unsigned char c : s.substr(0, max_text)) {
          if (c < 0x20 || c == 0x7f) {
            out += fmt::format("\\x{:02x}", c);
          } else if (exact && c == '\'') {
            out += "''";
          } else {
            out += static_cast<char>(c);
          }
        }
        if (s.size() > max_text) out += "...";
        out += '\'';
        break;
      }
      case 4: {
        const std::string& s = std::get<Blob>(v).bytes;
        out += "x'";
        for (size_t j = 0; j < s.size() && j < max_blob; ++j) {
          out += fmt::format("{:02x}", static_cast<unsigned char>(s[j]));
        }
        if (s.size() > max_blob) out += "...";
        out += '\'';
        break;
      }
    }
  }
  return out + ")";
}

}  // namespace

std::string KeyToString(std::string_view encoded) { return KeyText(encoded, 64, 32, false); }

std::string KeyToFullString(std::string_view encoded) {
  return KeyText(encoded, std::string::npos, std::string::npos, true);
}

}  // namespace ferry
