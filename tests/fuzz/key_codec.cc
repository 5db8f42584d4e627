// libFuzzer target: the order-preserving key codec (common/key_codec.h).
//
// Each input is used twice:
// 1. As an encoded key from the wire or a state file: DecodeKey never
//    crashes, and what it accepts is canonical — re-encoding the tuple gives
//    the same bytes (the one exception, -0.0, encodes as 0.0 like SQLite
//    compares it), and KeyToString prints it.
// 2. As two tuples built from the bytes (FuzzedDataProvider): each round-trips
//    (DecodeKey(EncodeKey(t)) == t), and the encodings compare bytewise in the
//    order of a reference comparison of the tuples written from the codec's
//    contract: element by element NULL < integer < real < text < blob,
//    integers and reals numerically, text and blob bytewise, a shorter
//    prefix first. NaN is not generated (SQLite stores NaN as NULL).
// Any violation aborts with both tuples printed.
#include "common/key_codec.h"

#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using ferry::Blob;
using ferry::Null;
using ferry::Text;
using ferry::Value;

int Sign(int v) { return (v > 0) - (v < 0); }

template <typename T>
int Cmp(const T& a, const T& b) {
  return (a > b) - (a < b);
}

int CmpBytes(const std::string& a, const std::string& b) {
  const size_t n = a.size() < b.size() ? a.size() : b.size();
  int c = n == 0 ? 0 : std::memcmp(a.data(), b.data(), n);
  if (c != 0) return Sign(c);
  return Cmp(a.size(), b.size());
}

int CmpValue(const Value& a, const Value& b) {
  if (a.index() != b.index()) return Cmp(a.index(), b.index());
  switch (a.index()) {
    case 1:
      return Cmp(std::get<int64_t>(a), std::get<int64_t>(b));
    case 2:
      return Cmp(std::get<double>(a), std::get<double>(b));  // -0.0 == 0.0
    case 3:
      return CmpBytes(std::get<Text>(a).bytes, std::get<Text>(b).bytes);
    case 4:
      return CmpBytes(std::get<Blob>(a).bytes, std::get<Blob>(b).bytes);
    default:
      return 0;
  }
}

int CmpTuple(const std::vector<Value>& a, const std::vector<Value>& b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    int c = CmpValue(a[i], b[i]);
    if (c != 0) return c;
  }
  return Cmp(a.size(), b.size());
}

// `decoded` is what `original` came back as: bit-exact, except -0.0 which
// decodes as 0.0.
bool SameValue(const Value& original, const Value& decoded) {
  if (original.index() == 2 && decoded.index() == 2) {
    const double x = std::get<double>(original), y = std::get<double>(decoded);
    if (x == 0.0) return y == 0.0 && !std::signbit(y);
    return std::memcmp(&x, &y, sizeof x) == 0;
  }
  return original == decoded;
}

std::string Hex(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    std::snprintf(buf, sizeof buf, "%02x", c);
    out += buf;
  }
  return out;
}

[[noreturn]] void Fail(const char* what, const std::string& a, const std::string& b) {
  std::fprintf(stderr, "key_codec fuzz: %s\n  a = %s\n  b = %s\n", what, Hex(a).c_str(),
               Hex(b).c_str());
  std::abort();
}

Value MakeValue(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 6)) {
    case 0:
      return Null{};
    case 1:
      return in.ConsumeIntegral<int64_t>();
    case 2:  // small integers collide more often: equal prefixes, then order
      return static_cast<int64_t>(in.ConsumeIntegralInRange<int>(-3, 3));
    case 3: {  // any bit pattern: infinities, subnormals, -0.0; NaN is not a SQLite value
      uint64_t bits = in.ConsumeIntegral<uint64_t>();
      double d;
      std::memcpy(&d, &bits, sizeof d);
      if (std::isnan(d)) return static_cast<double>(in.ConsumeIntegralInRange<int>(-2, 2)) * 0.5;
      return d;
    }
    case 4:
      return static_cast<double>(in.ConsumeIntegralInRange<int>(-3, 3)) * 0.5;
    case 5:
      return Text{in.ConsumeRandomLengthString(12)};
    default:
      return Blob{in.ConsumeRandomLengthString(12)};
  }
}

std::vector<Value> MakeTuple(FuzzedDataProvider& in) {
  std::vector<Value> t(in.ConsumeIntegralInRange<size_t>(0, 4));
  for (Value& v : t) v = MakeValue(in);
  return t;
}

void CheckRoundTrip(const std::vector<Value>& t, const std::string& enc) {
  if (t.empty()) {
    if (!enc.empty()) Fail("the empty tuple must encode as the empty key", enc, "");
    return;
  }
  auto back = ferry::DecodeKey(enc);
  if (!back.ok()) Fail("an encoded tuple does not decode", enc, back.status().message());
  if (back->size() != t.size()) Fail("round trip changed the tuple's length", enc, "");
  for (size_t i = 0; i < t.size(); ++i) {
    if (!SameValue(t[i], (*back)[i])) Fail("round trip changed an element", enc, "");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 1. Raw bytes as an encoded key.
  const std::string raw(reinterpret_cast<const char*>(data), size);
  auto decoded = ferry::DecodeKey(raw);
  if (decoded.ok()) {
    const std::string again = ferry::EncodeKey(*decoded);
    bool has_negative_zero = false;
    for (const Value& v : *decoded) {
      if (v.index() == 2 && std::get<double>(v) == 0.0 && std::signbit(std::get<double>(v)))
        has_negative_zero = true;
    }
    if (again != raw && !has_negative_zero)
      Fail("a decoded key re-encodes differently", raw, again);
    if (ferry::KeyToString(raw).empty()) Fail("KeyToString printed nothing", raw, "");
  } else if (ferry::KeyToString(raw) != (raw.empty() ? "" : "<malformed key>")) {
    Fail("KeyToString of a malformed key", raw, ferry::KeyToString(raw));
  }

  // 2. Two tuples: round trip and order.
  FuzzedDataProvider in(data, size);
  const std::vector<Value> a = MakeTuple(in);
  const std::vector<Value> b = MakeTuple(in);
  const std::string ea = ferry::EncodeKey(a), eb = ferry::EncodeKey(b);
  CheckRoundTrip(a, ea);
  CheckRoundTrip(b, eb);
  if (Sign(CmpBytes(ea, eb)) != CmpTuple(a, b)) {
    Fail("bytewise order of the encodings differs from the tuples' order", ea, eb);
  }
  return 0;
}
