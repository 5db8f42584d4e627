// The spec's Lua row function (spec/lua_transform.h): value mapping both
// ways, dropping rows, row errors with their reasons, the sandbox, the
// instruction budget and the memory cap, determinism.
#include "spec/lua_transform.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>

namespace ferry {
namespace {

using std::string_literals::operator""s;

std::unique_ptr<LuaTransform> Make(const std::string& chunk,
                                   LuaTransform::Limits limits = LuaTransform::Limits()) {
  auto t = LuaTransform::Create(chunk, "lua", limits);
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? std::move(t).value() : nullptr;
}

std::string CreateError(const std::string& chunk) {
  auto t = LuaTransform::Create(chunk, "lua");
  EXPECT_FALSE(t.ok()) << "chunk was accepted: " << chunk;
  if (t.ok()) return "";
  EXPECT_EQ(t.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(t.status().message().find('\n'), std::string::npos) << t.status().message();
  return t.status().message();
}

std::vector<TargetColumn> Out(std::initializer_list<std::pair<const char*, StringAs>> cols) {
  std::vector<TargetColumn> out;
  for (const auto& [name, as] : cols) out.push_back({name, as});
  return out;
}

// The reason of a row error (and that it is one).
std::string RowError(LuaTransform& t, const Row& in) {
  auto r = t.Apply(in);
  EXPECT_FALSE(r.ok()) << "the row was transformed";
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Code::kPermanent);
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
  return r.status().message();
}

Row Kept(LuaTransform& t, const Row& in) {
  auto r = t.Apply(in);
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (!r.ok()) return {};
  EXPECT_TRUE(r->has_value()) << "the row was dropped";
  return r->has_value() ? **r : Row();
}

const StringAs kText = StringAs::kText;
const StringAs kBlob = StringAs::kBlob;
const StringAs kAuto = StringAs::kTextIfUtf8;

TEST(LuaTransformTest, IdentityKeepsEveryKindOfValue) {
  auto t = Make("return function(row) return row end");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"id", "name", "score", "photo", "note"}, Out({{"id", kAuto},
                                                                     {"name", kText},
                                                                     {"score", kAuto},
                                                                     {"photo", kBlob},
                                                                     {"note", kText}}))
                  .ok());
  const Row in = {int64_t{42}, Text{"Zoë"}, 2.5, Blob{"\x00\x01\xff\x00"s}, Null{}};
  EXPECT_EQ(Kept(*t, in), in);
  const Row extremes = {int64_t{INT64_MIN}, Text{""}, -0.0, Blob{""}, Text{"\x00"s}};
  EXPECT_EQ(Kept(*t, extremes), extremes);
}

TEST(LuaTransformTest, IntegersAndFloatsStayApart) {
  auto t = Make(R"(return function(row)
    return { i = 3, f = 3.0, kind_in = math.type(row.x), kind_y = math.type(row.y),
             half = row.x / 2, quot = row.x // 2, big = row.big + 1 }
  end)");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"x", "y", "big"}, Out({{"i", kAuto},
                                              {"f", kAuto},
                                              {"kind_in", kText},
                                              {"kind_y", kText},
                                              {"half", kAuto},
                                              {"quot", kAuto},
                                              {"big", kAuto}}))
                  .ok());
  const Row out = Kept(*t, {int64_t{7}, 7.0, int64_t{INT64_MAX - 1}});
  ASSERT_EQ(out.size(), 7u);
  EXPECT_EQ(out[0], Value(int64_t{3}));
  EXPECT_EQ(out[1], Value(3.0));
  EXPECT_EQ(out[2], Value(Text{"integer"}));
  EXPECT_EQ(out[3], Value(Text{"float"}));
  EXPECT_EQ(out[4], Value(3.5));
  EXPECT_EQ(out[5], Value(int64_t{3}));
  EXPECT_EQ(out[6], Value(int64_t{INT64_MAX}));  // exact: no trip through a double
}

TEST(LuaTransformTest, NullIsAnAbsentKeyBothWays) {
  auto t = Make(R"(return function(row)
    local n = 0
    for _ in pairs(row) do n = n + 1 end
    return { id = row.id, present = n, note_is_nil = row.note == nil }
  end)");
  ASSERT_TRUE(t);
  ASSERT_TRUE(
      t->Bind(
           {"id", "note"},
           Out({{"id", kAuto}, {"present", kAuto}, {"note_is_nil", kAuto}, {"never_set", kText}}))
          .ok());
  EXPECT_EQ(Kept(*t, {int64_t{1}, Null{}}), (Row{int64_t{1}, int64_t{1}, int64_t{1}, Null{}}));
  EXPECT_EQ(Kept(*t, {int64_t{2}, Text{"x"}}), (Row{int64_t{2}, int64_t{2}, int64_t{0}, Null{}}));
  // An empty string is not NULL.
  EXPECT_EQ(Kept(*t, {int64_t{3}, Text{""}}), (Row{int64_t{3}, int64_t{2}, int64_t{0}, Null{}}));
}

TEST(LuaTransformTest, StringsBecomeTextOrBlobByTheTargetColumn) {
  auto t = Make("return function(row) return { t = row.s, b = row.s, a = row.s } end");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"s"}, Out({{"t", kText}, {"b", kBlob}, {"a", kAuto}})).ok());
  const std::string binary = "\x00\xff\xfe packed \x00"s;
  EXPECT_EQ(Kept(*t, {Blob{binary}}), (Row{Text{binary}, Blob{binary}, Blob{binary}}));
  EXPECT_EQ(Kept(*t, {Text{"héllo ✓"}}), (Row{Text{"héllo ✓"}, Blob{"héllo ✓"}, Text{"héllo ✓"}}));
  // Valid UTF-8 with a NUL byte is still text in an untyped column.
  EXPECT_EQ(Kept(*t, {Blob{"a\x00b"s}}), (Row{Text{"a\x00b"s}, Blob{"a\x00b"s}, Text{"a\x00b"s}}));
}

TEST(LuaTransformTest, BlobsKeepNulBytesThroughStringFunctions) {
  auto t = Make(R"(return function(row)
    return { len = #row.data, first = row.data:byte(1), last = row.data:byte(-1),
             rev = row.data:reverse() }
  end)");
  ASSERT_TRUE(t);
  ASSERT_TRUE(
      t->Bind({"data"}, Out({{"len", kAuto}, {"first", kAuto}, {"last", kAuto}, {"rev", kBlob}}))
          .ok());
  EXPECT_EQ(Kept(*t, {Blob{"\x00\x01\x02\x00\xff"s}}),
            (Row{int64_t{5}, int64_t{0}, int64_t{255}, Blob{"\xff\x00\x02\x01\x00"s}}));
}

TEST(LuaTransformTest, BooleansBecomeOneAndZero) {
  auto t = Make("return function(row) return { yes = row.n > 0, no = row.n < 0 } end");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"n"}, Out({{"yes", kAuto}, {"no", kAuto}})).ok());
  EXPECT_EQ(Kept(*t, {int64_t{5}}), (Row{int64_t{1}, int64_t{0}}));
}

// A v1 record as a legacy writer packed it: int32 amount (little-endian),
// int16 quantity, then a string with a 1-byte length.
std::string PackV1(int32_t amount, int16_t quantity, const std::string& currency) {
  std::string out;
  const uint32_t a = static_cast<uint32_t>(amount);
  for (int i = 0; i < 4; ++i) out += static_cast<char>((a >> (8 * i)) & 0xff);
  const uint16_t q = static_cast<uint16_t>(quantity);
  for (int i = 0; i < 2; ++i) out += static_cast<char>((q >> (8 * i)) & 0xff);
  out += static_cast<char>(currency.size());
  return out + currency;
}

TEST(LuaTransformTest, UnpacksALittleEndianV1RecordAndDropsRows) {
  auto t = Make(R"(
    return function(row)
      local amount, quantity, currency = string.unpack("<i4 i2 s1", row.packed)
      if quantity == 0 then return nil end
      return { order_id = row.id, amount_cents = amount, quantity = quantity,
               currency = currency }
    end)");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"id", "packed"}, Out({{"order_id", kAuto},
                                             {"amount_cents", kAuto},
                                             {"quantity", kAuto},
                                             {"currency", kText}}))
                  .ok());
  EXPECT_EQ(Kept(*t, {int64_t{1}, Blob{PackV1(123456, 3, "EUR")}}),
            (Row{int64_t{1}, int64_t{123456}, int64_t{3}, Text{"EUR"}}));
  EXPECT_EQ(Kept(*t, {int64_t{2}, Blob{PackV1(-2000000000, -1, "")}}),
            (Row{int64_t{2}, int64_t{-2000000000}, int64_t{-1}, Text{""}}));
  auto dropped = t->Apply(Row{int64_t{3}, Blob{PackV1(500, 0, "USD")}});
  ASSERT_TRUE(dropped.ok()) << dropped.status().message();
  EXPECT_FALSE(dropped->has_value());
  // A truncated record is a row error with Lua's reason.
  EXPECT_NE(RowError(*t, {int64_t{4}, Blob{"\x01\x02"s}}).find("data string too short"),
            std::string::npos);
  // string.pack the other way round.
  auto pack = Make(R"(return function(row)
      return { packed = string.pack("<i4 i2 s1", row.a, row.q, row.c) } end)");
  ASSERT_TRUE(pack);
  ASSERT_TRUE(pack->Bind({"a", "q", "c"}, Out({{"packed", kBlob}})).ok());
  EXPECT_EQ(Kept(*pack, {int64_t{-7}, int64_t{300}, Text{"GBP"}}),
            (Row{Blob{PackV1(-7, 300, "GBP")}}));
}

TEST(LuaTransformTest, ARuntimeErrorIsARowErrorAndTheNextRowWorks) {
  auto t = Make(R"(return function(row)
    if row.id == 2 then error("record " .. row.id .. " is corrupt") end
    return { id = row.id, n = #row.name }
  end)");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"id", "name"}, Out({{"id", kAuto}, {"n", kAuto}})).ok());
  EXPECT_EQ(RowError(*t, {int64_t{1}, Null{}}),
            "lua:3: attempt to get length of a nil value (field 'name')");
  EXPECT_EQ(RowError(*t, {int64_t{2}, Text{"x"}}), "lua:2: record 2 is corrupt");
  EXPECT_EQ(Kept(*t, {int64_t{3}, Text{"abc"}}), (Row{int64_t{3}, int64_t{3}}));
}

TEST(LuaTransformTest, ErrorObjectsThatAreNotStringsAreNamed) {
  auto t = Make("return function(row) error({code = 7}) end");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"id"}, Out({{"id", kAuto}})).ok());
  EXPECT_EQ(RowError(*t, {int64_t{1}}), "lua: the function raised an error object of type table");
}

TEST(LuaTransformTest, BadReturnValuesAreRowErrorsNamingTheColumn) {
  auto t = Make(R"(return function(row)
    if row.k == 1 then return { id = 1, emial = "typo" } end
    if row.k == 2 then return { id = {} } end
    if row.k == 3 then return { id = tostring } end
    if row.k == 4 then return { [1] = 5 } end
    if row.k == 5 then return "id" end
    if row.k == 6 then return { id = 1, ID = 2 } end
    return { ID = row.k }
  end)");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"k"}, Out({{"id", kAuto}, {"email", kText}})).ok());
  EXPECT_EQ(RowError(*t, {int64_t{1}}),
            "lua: the function returned column 'emial', which the target does not have (it "
            "has id, email)");
  EXPECT_EQ(RowError(*t, {int64_t{2}}),
            "lua: column 'id' is a table value; a column takes an integer, float, string, "
            "boolean or nil");
  EXPECT_NE(RowError(*t, {int64_t{3}}).find("column 'id' is a function value"), std::string::npos);
  EXPECT_NE(RowError(*t, {int64_t{4}}).find("a table with a number key"), std::string::npos);
  EXPECT_NE(RowError(*t, {int64_t{5}})
                .find("the function returned a string; it must return a "
                      "table of target columns or nil"),
            std::string::npos);
  EXPECT_NE(RowError(*t, {int64_t{6}}).find("column 'id' twice"), std::string::npos);
  // A name that differs only in ASCII case still finds its column.
  EXPECT_EQ(Kept(*t, {int64_t{7}}), (Row{int64_t{7}, Null{}}));
}

TEST(LuaTransformTest, TheReusedRowTableCarriesNothingIntoTheNextRow) {
  auto t = Make(R"(return function(row)
    if row.id == 1 then
      row.extra = "only for row 1"
      setmetatable(row, { __index = function() return "leaked" end })
      return row
    end
    if row.id == 2 then row.name = "changed"; return nil end
    if row.id == 3 then row.id = 300; return { id = 3, extra = row.missing } end
    return row
  end)");
  ASSERT_TRUE(t);
  ASSERT_TRUE(
      t->Bind({"id", "name"}, Out({{"id", kAuto}, {"name", kText}, {"extra", kText}})).ok());
  EXPECT_EQ(Kept(*t, {int64_t{1}, Text{"a"}}),
            (Row{int64_t{1}, Text{"a"}, Text{"only for row 1"}}));
  auto dropped = t->Apply(Row{int64_t{2}, Text{"b"}});
  ASSERT_TRUE(dropped.ok());
  EXPECT_FALSE(dropped->has_value());
  EXPECT_EQ(Kept(*t, {int64_t{3}, Null{}}), (Row{int64_t{3}, Null{}, Null{}}));
  EXPECT_EQ(Kept(*t, {int64_t{4}, Null{}}), (Row{int64_t{4}, Null{}, Null{}}));
  EXPECT_EQ(Kept(*t, {int64_t{5}, Text{"e"}}), (Row{int64_t{5}, Text{"e"}, Null{}}));
}

TEST(LuaTransformTest, BindAgainForOtherColumns) {
  auto t = Make("return function(row) return row end");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Apply(Row{}).status().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(t->Bind({"a", "b"}, Out({{"a", kAuto}, {"b", kAuto}})).ok());
  EXPECT_EQ(Kept(*t, {int64_t{1}, int64_t{2}}), (Row{int64_t{1}, int64_t{2}}));
  ASSERT_TRUE(t->Bind({"x"}, Out({{"x", kText}})).ok());
  EXPECT_EQ(Kept(*t, {Text{"only x"}}), (Row{Text{"only x"}}));
  EXPECT_EQ(t->Apply(Row{}).status().code(), Code::kInvalidArgument);  // too few values
  EXPECT_EQ(t->Bind({"x", "x"}, Out({{"x", kText}})).code(), Code::kInvalidArgument);
  EXPECT_EQ(t->Bind({"x"}, Out({{"x", kText}, {"x", kBlob}})).code(), Code::kInvalidArgument);
}

TEST(LuaTransformTest, ApplyBeforeBindIsRefused) {
  auto t = Make("return function(row) return row end");
  ASSERT_TRUE(t);
  Value out;
  EXPECT_EQ(t->Apply(nullptr, &out).status().code(), Code::kFailedPrecondition);
}

// ---- the sandbox ----

TEST(LuaTransformTest, DangerousGlobalsAreRefusedWhenTheChunkIsLoaded) {
  for (const char* name : {"io", "os", "require", "load", "loadstring", "dofile", "loadfile",
                           "debug", "package", "collectgarbage", "print", "coroutine", "warn"}) {
    SCOPED_TRACE(name);
    // Inside the function body: found by the static check.
    const std::string in_body = CreateError(std::string("return function(row)\n  local x = ") +
                                            name + "\n  return row\nend");
    EXPECT_NE(in_body.find(std::string("lua reaches for '") + name + "' (lua:2)"),
              std::string::npos)
        << in_body;
    EXPECT_NE(in_body.find("which the sandbox does not provide"), std::string::npos);
    // At chunk-load time.
    const std::string at_load =
        CreateError(std::string("local f = ") + name + "\nreturn function(row) return row end");
    EXPECT_NE(at_load.find(std::string("'") + name + "'"), std::string::npos) << at_load;
  }
  EXPECT_NE(CreateError("return function(row) return { x = math.random(6) } end")
                .find("lua reaches for math.random (lua:1), which the sandbox does not provide "
                      "(a transform must be deterministic"),
            std::string::npos);
  EXPECT_NE(
      CreateError("math.randomseed(1) return function(row) return row end").find("math.randomseed"),
      std::string::npos);
  EXPECT_NE(CreateError("return function(row) return { x = os.time() } end").find("'os'"),
            std::string::npos);
  EXPECT_NE(CreateError("return function(row) io.write('x') return row end").find("'io'"),
            std::string::npos);
  EXPECT_NE(CreateError("return function(row) return { x = string.dump } end").find("string.dump"),
            std::string::npos);
  // The same names as locals are fine: only globals are checked.
  auto t = Make("local io, load = 1, 2\nreturn function(row) local os = io + load return row end");
  EXPECT_TRUE(t);
}

TEST(LuaTransformTest, UndefinedGlobalsAndLibraryFieldsAreRefused) {
  EXPECT_EQ(CreateError("return function(row)\n\n  return { x = strng.upper(row.s) }\nend"),
            "lua uses the global 'strng' (lua:3), which is not defined");
  EXPECT_EQ(CreateError("return function(row) return { x = string.uppr(row.s) } end"),
            "lua uses string.uppr (lua:1), which is not defined");
  // Nested functions, _ENV spelt out.
  EXPECT_NE(CreateError("return function(row) local function f() return _ENV.os end "
                        "return f() end")
                .find("'os'"),
            std::string::npos);
  // Globals the chunk defines while it runs are fine, also library extensions.
  auto t = Make(R"(
    function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end
    function string.shout(s) return s:upper() .. "!" end
    return function(row) return { t = trim(row.s), u = string.shout(row.s) } end)");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"s"}, Out({{"t", kText}, {"u", kText}})).ok());
  EXPECT_EQ(Kept(*t, {Text{"  hi  "}}), (Row{Text{"hi"}, Text{"  HI  !"}}));
}

TEST(LuaTransformTest, ReachingForTheSandboxAtRowTimeIsARowError) {
  // Names computed at run time escape the static check; the sandbox refuses
  // them when the row runs.
  auto t = Make(R"(return function(row)
    if row.how == "env" then return { x = _ENV[row.name] } end
    if row.how == "g" then return { x = _G[row.name] } end
    if row.how == "alias" then local m = math; return { x = m[row.name](6) } end
    if row.how == "dump" then return { x = string[row.name](tostring) } end
    return { x = type(_ENV[row.name]) }
  end)");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"how", "name"}, Out({{"x", kText}})).ok());
  EXPECT_EQ(RowError(*t, {Text{"env"}, Text{"io"}}), "lua:2: the sandbox has no global 'io'");
  EXPECT_EQ(RowError(*t, {Text{"g"}, Text{"os"}}), "lua:3: the sandbox has no global 'os'");
  EXPECT_NE(RowError(*t, {Text{"alias"}, Text{"random"}}).find("attempt to call a nil value"),
            std::string::npos);
  EXPECT_NE(RowError(*t, {Text{"dump"}, Text{"dump"}}).find("attempt to call a nil value"),
            std::string::npos);
  EXPECT_EQ(Kept(*t, {Text{"type"}, Text{"string"}}), (Row{Text{"table"}}));
}

TEST(LuaTransformTest, GlobalsAreReadOnlyWhileRowsAreTransformed) {
  auto t = Make(R"(
    counter = 0
    return function(row) counter = counter + 1; return { n = counter } end)");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"id"}, Out({{"n", kAuto}})).ok());
  EXPECT_EQ(RowError(*t, {int64_t{1}}),
            "lua:3: the function assigned the global 'counter'; globals are read-only once the "
            "chunk has run (use a local)");
}

TEST(LuaTransformTest, TheStringMetatableIsHidden) {
  auto t = Make("return function(row) return { m = tostring(getmetatable('')) } end");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"id"}, Out({{"m", kText}})).ok());
  EXPECT_EQ(Kept(*t, {int64_t{1}}), (Row{Text{"false"}}));
}

TEST(LuaTransformTest, ChunksThatDoNotCompileOrReturnNoFunctionAreRefused) {
  EXPECT_NE(CreateError("return function(row").find("lua does not compile: lua:1:"),
            std::string::npos);
  EXPECT_EQ(CreateError("return 42"),
            "lua does not return a function (it returns a number): end the chunk with `return "
            "function(row) ... end`");
  EXPECT_NE(CreateError("").find("it returns nothing"), std::string::npos);
  EXPECT_NE(CreateError("x = 1").find("it returns nothing"), std::string::npos);
  EXPECT_EQ(CreateError("error('boom')"), "lua failed while its chunk ran: lua:1: boom");
  // Binary chunks are refused (they can crash Lua).
  EXPECT_NE(CreateError("\x1bLua\x54").find("does not compile"), std::string::npos);
}

// ---- limits ----

TEST(LuaTransformTest, AnEndlessLoopIsARowErrorAndTheNextRowWorks) {
  LuaTransform::Limits limits;
  limits.instructions_per_row = 100000;
  auto t = Make(R"(return function(row)
    if row.id == 1 then while true do end end
    if row.id == 2 then
      -- pcall must not swallow the budget
      while true do pcall(function() while true do end end) end
    end
    local s = 0
    for i = 1, 1000 do s = s + i end
    return { id = s }
  end)",
                limits);
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"id"}, Out({{"id", kAuto}})).ok());
  EXPECT_EQ(RowError(*t, {int64_t{1}}),
            "lua: over the budget of 100000 instructions for one row (an endless loop?)");
  EXPECT_NE(RowError(*t, {int64_t{2}}).find("over the budget"), std::string::npos);
  EXPECT_EQ(Kept(*t, {int64_t{3}}), (Row{int64_t{500500}}));
  // The budget is per row: many rows of 1000 iterations each pass.
  for (int i = 0; i < 300; ++i) ASSERT_EQ(Kept(*t, {int64_t{3}}), (Row{int64_t{500500}}));
}

// ApplyRows runs a batch in one protected call: a row error (a runtime
// error, an endless loop, a bad return value) costs that row alone, each row
// has its own budget, the kept rows come out packed and in order, and a
// row after a failed or dropped one never sees what it left in the row table.
TEST(LuaTransformTest, ARunOfRowsIsolatesEachRowsErrorAndBudget) {
  LuaTransform::Limits limits;
  limits.instructions_per_row = 100000;
  auto t = Make(R"(return function(row)
    if row.id < 100 and row.id % 10 == 3 then error("row " .. row.id .. " is bad") end
    if row.id < 100 and row.id % 10 == 5 then while true do end end
    if row.id % 10 == 7 then row.extra = 1 return nil end
    if row.id < 100 and row.id % 10 == 9 then return { id = {} } end
    local s = 0
    for i = 1, 2000 do s = s + 1 end  -- the last 100 rows together exceed one row's budget
    return { id = row.id, twice = row.id * 2, note = row.note, seen = row.extra }
  end)",
                limits);
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"id", "note"},
                      Out({{"id", kAuto}, {"twice", kAuto}, {"note", kText}, {"seen", kAuto}}))
                  .ok());
  const size_t n = 200;
  std::vector<Value> in;
  for (size_t i = 0; i < n; ++i) {
    in.emplace_back(static_cast<int64_t>(i));
    in.emplace_back(i % 2 ? Value(Null{}) : Value(Text{"n" + std::to_string(i)}));
  }
  std::vector<Value> out(n * 4, Value(Text{"stale"}));
  LuaTransform::AppliedRows applied;
  ASSERT_TRUE(t->ApplyRows(in.data(), n, out.data(), &applied).ok());
  std::vector<size_t> want_kept;
  std::vector<size_t> want_failed;
  uint64_t want_dropped = 0;
  for (size_t i = 0; i < n; ++i) {
    const size_t d = i % 10;
    if (i < 100 && (d == 3 || d == 5 || d == 9)) {
      want_failed.push_back(i);
    } else if (d == 7) {
      ++want_dropped;
    } else {
      want_kept.push_back(i);
    }
  }
  EXPECT_EQ(applied.kept, want_kept);
  EXPECT_EQ(applied.dropped, want_dropped);
  ASSERT_EQ(applied.failed.size(), want_failed.size());
  for (size_t f = 0; f < want_failed.size(); ++f) {
    const size_t i = want_failed[f];
    EXPECT_EQ(applied.failed[f].first, i);
    const std::string& why = applied.failed[f].second;
    const std::string want = i % 10 == 3   ? "row " + std::to_string(i) + " is bad"
                             : i % 10 == 5 ? "over the budget"
                                           : "column 'id' is a table value";
    EXPECT_NE(why.find(want), std::string::npos) << why;
  }
  for (size_t k = 0; k < want_kept.size(); ++k) {
    const size_t i = want_kept[k];
    const Value* row = out.data() + k * 4;
    EXPECT_EQ(row[0], Value(static_cast<int64_t>(i))) << "row " << i;
    EXPECT_EQ(row[1], Value(static_cast<int64_t>(2 * i))) << "row " << i;
    EXPECT_EQ(row[2], i % 2 ? Value(Null{}) : Value(Text{"n" + std::to_string(i)})) << "row " << i;
    EXPECT_EQ(row[3], Value(Null{})) << "row " << i << " saw a dropped row's field";
  }
  // The same rows one at a time agree.
  for (size_t i = 0; i < n; ++i) {
    std::vector<Value> one(4);
    auto r = t->Apply(in.data() + 2 * i, one.data());
    const bool kept = std::find(want_kept.begin(), want_kept.end(), i) != want_kept.end();
    const bool failed = std::find(want_failed.begin(), want_failed.end(), i) != want_failed.end();
    EXPECT_EQ(r.ok(), !failed) << "row " << i;
    if (r.ok()) {
      EXPECT_EQ(*r, kept) << "row " << i;
    }
  }
}

TEST(LuaTransformTest, AnEndlessLoopWhileTheChunkLoadsIsRefused) {
  LuaTransform::Limits limits;
  limits.instructions_per_row = 100000;
  auto t = LuaTransform::Create("while true do end", "lua", limits);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(),
            "lua failed while its chunk ran: lua: over the budget of 100000 instructions for one "
            "row (an endless loop?)");
}

TEST(LuaTransformTest, AMemoryBombIsARowErrorAndTheNextRowWorks) {
  LuaTransform::Limits limits;
  limits.memory_bytes = size_t{16} << 20;
  limits.instructions_per_row = 1'000'000'000;
  auto t = Make(R"(return function(row)
    if row.id == 1 then
      local t = {}
      for i = 1, 1e9 do t[i] = string.rep("x", 100) .. i end
    end
    if row.id == 2 then return { id = #string.rep("x", 1 << 30) } end
    if row.id == 3 then
      -- a caught memory error is the function's business
      local ok = pcall(string.rep, "x", 1 << 30)
      return { id = ok and 1 or 0 }
    end
    return row
  end)",
                limits);
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Bind({"id"}, Out({{"id", kAuto}})).ok());
  const std::string kReason =
      "lua: not enough memory (the function's state may hold at most 16 MiB)";
  EXPECT_EQ(RowError(*t, {int64_t{1}}), kReason);
  EXPECT_LE(t->memory_in_use(), limits.memory_bytes);
  EXPECT_EQ(RowError(*t, {int64_t{2}}), kReason);
  EXPECT_EQ(Kept(*t, {int64_t{4}}), (Row{int64_t{4}}));
  // An input value larger than the whole cap: a row error, not a crash.
  ASSERT_TRUE(t->Bind({"id", "big"}, Out({{"id", kAuto}})).ok());
  EXPECT_EQ(RowError(*t, {int64_t{5}, Blob{std::string(size_t{20} << 20, 'b')}}), kReason);
  EXPECT_EQ(Kept(*t, {int64_t{6}, Null{}}), (Row{int64_t{6}}));
}

// ---- determinism ----

TEST(LuaTransformTest, TwoInstancesGiveTheSameRowsInAnyOrder) {
  const std::string chunk = R"(
    local function norm(s) return (s:lower():gsub("%s+", " ")) end
    return function(row)
      local keys = {}
      for k in pairs(row) do keys[#keys + 1] = k end
      table.sort(keys)
      return { id = row.id, name = norm(row.name), keys = table.concat(keys, ","),
               score = string.format("%.3f", row.score * 1.1), sq = math.floor(math.sqrt(row.id)),
               chars = utf8.len(row.name) }
    end)";
  auto a = Make(chunk);
  auto b = Make(chunk);
  ASSERT_TRUE(a && b);
  const ColumnNames in = {"id", "name", "score"};
  const auto out = Out({{"id", kAuto},
                        {"name", kText},
                        {"keys", kText},
                        {"score", kText},
                        {"sq", kAuto},
                        {"chars", kAuto}});
  ASSERT_TRUE(a->Bind(in, out).ok());
  ASSERT_TRUE(b->Bind(in, out).ok());
  std::vector<Row> rows;
  for (int64_t i = 0; i < 2000; ++i) {
    rows.push_back({i, Text{"Name  " + std::to_string(i * 7919 % 1000) + "  Ü"}, i / 3.0});
  }
  std::vector<Row> first;
  for (const Row& r : rows) first.push_back(Kept(*a, r));
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  for (size_t i : order) ASSERT_EQ(Kept(*b, rows[i]), first[i]) << "row " << i;
  // And again on the first instance, after other rows.
  for (size_t i : order) ASSERT_EQ(Kept(*a, rows[i]), first[i]) << "row " << i;
  EXPECT_EQ(first[12][2], Value(Text{"id,name,score"}));
}

// ---- fuzz: garbled chunks never crash the process ----

TEST(LuaTransformTest, GarbledChunksAndRowsNeverCrash) {
  const std::vector<std::string> seeds = {
      R"(local function f(s) return s:upper() end
return function(row)
  local a, q, c = string.unpack("<i4 i2 s1", row.packed)
  if q == 0 then return nil end
  return { id = row.id, name = f(c), n = a * q, t = utf8.char(65 + q % 26) }
end)",
      "return function(row) for k, v in pairs(row) do row[k] = nil end return row end",
      "x = {} return function(row) return { id = #x, n = select('#', 1, 2) } end",
  };
  LuaTransform::Limits limits;
  limits.instructions_per_row = 20000;
  limits.memory_bytes = size_t{8} << 20;
  std::mt19937_64 rng(99);
  const std::string alphabet = "()[]{}=.,:;\"'#~<>+-*/%^ \n0123456789rowidnameendlocalreturn";
  int created = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string chunk = seeds[rng() % seeds.size()];
    for (int e = 0, n = 1 + static_cast<int>(rng() % 3); e < n; ++e) {
      const size_t pos = rng() % (chunk.size() + 1);
      if (rng() % 2) {
        chunk.insert(pos, 1, alphabet[rng() % alphabet.size()]);
      } else {
        chunk.erase(pos, rng() % 4);
      }
    }
    auto t = LuaTransform::Create(chunk, "lua", limits);
    if (!t.ok()) {
      ASSERT_EQ(t.status().code(), Code::kInvalidArgument);
      continue;
    }
    ++created;
    ASSERT_TRUE((*t)->Bind({"id", "packed", "name"},
                           Out({{"id", kAuto}, {"name", kText}, {"n", kAuto}, {"t", kBlob}}))
                    .ok());
    for (int r = 0; r < 3; ++r) {
      std::string packed;
      for (int b = 0, n = static_cast<int>(rng() % 12); b < n; ++b) {
        packed += static_cast<char>(rng());
      }
      auto out = (*t)->Apply(Row{int64_t{r}, Blob{packed}, r ? Value(Text{"x"}) : Value(Null{})});
      if (!out.ok()) {
        ASSERT_EQ(out.status().code(), Code::kPermanent);
        ASSERT_EQ(out.status().message().find('\n'), std::string::npos);
      }
    }
  }
  EXPECT_GT(created, 100);
}

// ---- helpers ----

TEST(LuaTransformTest, StringAsFollowsTheDeclaredType) {
  EXPECT_EQ(StringAsForType("TEXT"), StringAs::kText);
  EXPECT_EQ(StringAsForType("varchar(20)"), StringAs::kText);
  EXPECT_EQ(StringAsForType("INTEGER"), StringAs::kText);
  EXPECT_EQ(StringAsForType("BLOB"), StringAs::kBlob);
  EXPECT_EQ(StringAsForType("blob"), StringAs::kBlob);
  EXPECT_EQ(StringAsForType("bytea"), StringAs::kBlob);
  EXPECT_EQ(StringAsForType(""), StringAs::kTextIfUtf8);
  EXPECT_EQ(StringAsForType("  "), StringAs::kTextIfUtf8);
}

TEST(LuaTransformTest, Utf8Validation) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii, long enough for the 8-byte path"));
  EXPECT_TRUE(IsValidUtf8("Zoë ✓ 𝄞"));
  EXPECT_TRUE(IsValidUtf8("\x00"s));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("abc\xc3"));           // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("12345678\x80"));      // after the fast path
}

}  // namespace
}  // namespace ferry
