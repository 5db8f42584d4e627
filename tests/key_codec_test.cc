// Tests of common/key_codec.h: round trips, malformed input, and the central
// promise that encoded keys sort bytewise exactly as SQLite sorts the tuples.
#include "common/key_codec.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/sqlite_util.h"

namespace ferry {
namespace {

using std::string_literals::operator""s;

std::vector<Value> RoundTrip(const std::vector<Value>& values) {
  auto decoded = DecodeKey(EncodeKey(values));
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  return decoded.ok() ? *decoded : std::vector<Value>{};
}

TEST(KeyCodecTest, RoundTripsEveryType) {
  const std::vector<Value> values = {
      Null{},
      int64_t{0},
      int64_t{-1},
      std::numeric_limits<int64_t>::min(),
      std::numeric_limits<int64_t>::max(),
      1.5,
      -2.25,
      std::numeric_limits<double>::infinity(),
      -std::numeric_limits<double>::infinity(),
      std::numeric_limits<double>::denorm_min(),
      Text{""},
      Text{"a\0b\xff"s},
      Blob{""},
      Blob{"\0\0\xff\x00"s},
  };
  for (const Value& v : values) {
    EXPECT_EQ(RoundTrip({v}), std::vector<Value>{v}) << KeyToString(EncodeKey({v}));
  }
  EXPECT_EQ(RoundTrip(values), values);
}

TEST(KeyCodecTest, NegativeZeroDecodesAsZero) {
  std::vector<Value> decoded = RoundTrip({-0.0});
  ASSERT_EQ(decoded.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<double>(decoded[0]));
  EXPECT_EQ(std::get<double>(decoded[0]), 0.0);
  EXPECT_EQ(EncodeKey({-0.0}), EncodeKey({0.0}));
}

TEST(KeyCodecTest, RejectsMalformedEncodings) {
  const std::string good_int = EncodeKey({int64_t{7}});
  const std::vector<std::string> bad = {
      "",                             // empty is not a key
      "\x99"s,                        // unknown tag
      "\x00"s,                        // unknown tag 0
      good_int.substr(0, 5),          // truncated integer
      EncodeKey({1.0}).substr(0, 8),  // truncated real
      "\x30"
      "abc"s,           // unterminated text
      "\x40\x00\xff"s,  // escaped NUL, then no terminator
      "\x30"
      "a\x00\x01"s,            // terminator followed by an unknown tag
      good_int + "\x10\x80"s,  // valid key then a truncated element
  };
  for (const std::string& b : bad) {
    auto decoded = DecodeKey(b);
    EXPECT_FALSE(decoded.ok()) << "accepted " << testing::PrintToString(b);
    if (!decoded.ok()) {
      EXPECT_EQ(decoded.status().code(), Code::kInvalidArgument);
    }
  }
}

TEST(KeyCodecTest, RandomBytesNeverCrashTheDecoder) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 20000; ++i) {
    std::string s(rng() % 24, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    if (rng() % 2 && !s.empty()) s[0] = "\x05\x10\x20\x30\x40"[rng() % 5];
    auto decoded = DecodeKey(s);
    if (decoded.ok()) {
      EXPECT_FALSE(decoded->empty());
    }
  }
}

TEST(KeyCodecTest, KeyToStringIsReadable) {
  EXPECT_EQ(KeyToString(EncodeKey({int64_t{1}, Text{"abc"}, Blob{"\x00\xff"s}, Null{}})),
            "(1, 'abc', x'00ff', NULL)");
  EXPECT_EQ(KeyToString(""), "");
  EXPECT_EQ(KeyToString("\x99"), "<malformed key>");
}

TEST(KeyCodecTest, KeyToFullStringIsExact) {
  // The usual keys print as KeyToString prints them.
  for (const std::vector<Value>& key : std::vector<std::vector<Value>>{
           {int64_t{42}}, {Text{"acme"}, int64_t{7}}, {Blob{"\x00\xff"s}, Null{}}}) {
    EXPECT_EQ(KeyToFullString(EncodeKey(key)), KeyToString(EncodeKey(key)));
  }
  EXPECT_EQ(KeyToFullString(EncodeKey({Text{"acme"}, int64_t{7}})), "('acme', 7)");
  // Nothing is cut: keys that share a long prefix stay apart.
  const std::string long_text(100, 'k');
  EXPECT_EQ(KeyToFullString(EncodeKey({Text{long_text + "1"}})), "('" + long_text + "1')");
  EXPECT_EQ(KeyToString(EncodeKey({Text{long_text + "1"}})),
            KeyToString(EncodeKey({Text{long_text + "2"}})));
  std::string hex;
  for (int i = 0; i < 40; ++i) hex += "01";
  EXPECT_EQ(KeyToFullString(EncodeKey({Blob{std::string(40, '\x01')}})), "(x'" + hex + "')");
  // Quotes are doubled, reals keep their point: one text element never
  // prints like two, a real never like an integer.
  EXPECT_EQ(KeyToFullString(EncodeKey({Text{"a', 'b"}})), "('a'', ''b')");
  EXPECT_EQ(KeyToFullString(EncodeKey({Text{"a"}, Text{"b"}})), "('a', 'b')");
  EXPECT_EQ(KeyToFullString(EncodeKey({3.0})), "(3.0)");
  EXPECT_EQ(KeyToFullString(EncodeKey({int64_t{3}})), "(3)");
  EXPECT_EQ(KeyToFullString(EncodeKey({0.25, 1e20})), "(0.25, 1e+20)");
}

// ---- order equals SQLite's ORDER BY ----

std::string RandomBytes(std::mt19937_64& rng) {
  // A tiny alphabet with the escaping edge bytes, so prefixes and ties abound.
  static const char kAlphabet[] = {'\x00', '\x01', 'a', '\xfe', '\xff'};
  std::string s(rng() % 4, '\0');
  for (char& c : s) c = kAlphabet[rng() % sizeof kAlphabet];
  return s;
}

int64_t RandomInt(std::mt19937_64& rng) {
  static const int64_t kEdges[] = {std::numeric_limits<int64_t>::min(),
                                   std::numeric_limits<int64_t>::min() + 1,
                                   -256,
                                   -1,
                                   0,
                                   1,
                                   255,
                                   256,
                                   std::numeric_limits<int64_t>::max() - 1,
                                   std::numeric_limits<int64_t>::max()};
  if (rng() % 2) return kEdges[rng() % (sizeof kEdges / sizeof kEdges[0])];
  return static_cast<int64_t>(rng());
}

double RandomReal(std::mt19937_64& rng) {
  static const double kEdges[] = {-std::numeric_limits<double>::infinity(),
                                  -std::numeric_limits<double>::max(),
                                  -1.5,
                                  -std::numeric_limits<double>::denorm_min(),
                                  -0.0,
                                  0.0,
                                  std::numeric_limits<double>::denorm_min(),
                                  1.0,
                                  1.5,
                                  std::numeric_limits<double>::max(),
                                  std::numeric_limits<double>::infinity()};
  if (rng() % 2) return kEdges[rng() % (sizeof kEdges / sizeof kEdges[0])];
  std::uniform_real_distribution<double> d(-1e6, 1e6);
  return d(rng);
}

// A column's values are NULL, text, blob or one numeric kind: the codec
// orders integers and reals by type (see key_codec.h), SQLite numerically.
Value RandomValue(std::mt19937_64& rng, bool reals) {
  switch (rng() % 5) {
    case 0:
      return Null{};
    case 1:
    case 2:
      return reals ? Value(RandomReal(rng)) : Value(RandomInt(rng));
    case 3:
      return Text{RandomBytes(rng)};
    default:
      return Blob{RandomBytes(rng)};
  }
}

TEST(KeyCodecTest, BytewiseOrderEqualsSqliteOrderBy) {
  auto db = Db::Open(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  // Untyped columns: values keep the storage class they were bound with.
  ASSERT_TRUE(db->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, a, b, c)").ok());
  auto insert = db->Prepare("INSERT INTO t (id, a, b, c) VALUES (?1, ?2, ?3, ?4)");
  ASSERT_TRUE(insert.ok()) << insert.status().ToString();

  std::mt19937_64 rng(20240601);
  constexpr int kRows = 5000;
  std::vector<std::string> encoded;
  for (int id = 0; id < kRows; ++id) {
    std::vector<Value> tuple = {RandomValue(rng, false), RandomValue(rng, true),
                                RandomValue(rng, false)};
    insert->Bind(1, int64_t{id});
    for (int i = 0; i < 3; ++i) insert->BindValue(i + 2, tuple[i]);
    ASSERT_EQ(insert->Step(), SQLITE_DONE) << db->ErrorMessage();
    insert->Reset();
    encoded.push_back(EncodeKey(tuple));
  }

  auto select = db->Prepare("SELECT id FROM t ORDER BY a, b, c");
  ASSERT_TRUE(select.ok());
  std::vector<std::string> sqlite_order;
  while (select->Step() == SQLITE_ROW) sqlite_order.push_back(encoded[select->Int(0)]);
  ASSERT_EQ(sqlite_order.size(), encoded.size());

  std::vector<std::string> bytewise = encoded;
  std::sort(bytewise.begin(), bytewise.end());  // std::string compares like memcmp
  for (size_t i = 0; i < bytewise.size(); ++i) {
    ASSERT_EQ(sqlite_order[i], bytewise[i])
        << "position " << i << ": SQLite has " << KeyToString(sqlite_order[i])
        << ", bytewise order has " << KeyToString(bytewise[i]);
  }
}

TEST(KeyCodecTest, ShorterPrefixSortsFirst) {
  const std::vector<std::string> ascending = {
      EncodeKey({Text{""}, int64_t{0}}),   EncodeKey({Text{"a"}, Null{}}),
      EncodeKey({Text{"a"}, int64_t{-5}}), EncodeKey({Text{"a\0"s}, Null{}}),
      EncodeKey({Text{"a\0\0"s}, Null{}}), EncodeKey({Text{"a\x01"s}, Null{}}),
      EncodeKey({Text{"a\xff"s}, Null{}}), EncodeKey({Blob{""}, Null{}}),
      EncodeKey({Blob{"\0"s}, Null{}}),
  };
  for (size_t i = 1; i < ascending.size(); ++i) {
    EXPECT_LT(ascending[i - 1], ascending[i])
        << KeyToString(ascending[i - 1]) << " vs " << KeyToString(ascending[i]);
  }
}

}  // namespace
}  // namespace ferry
