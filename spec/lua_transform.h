// A migration spec's Lua row function (DESIGN.md "Migration spec"): one Lua
// 5.4 state, sandboxed and deterministic, that turns source rows into target
// rows.
//
// The chunk is run once, in Create, and must return a function. That
// function is called once per row with a table column name -> value and
// returns a table target column -> value, or nil to drop the row.
//
// Values in: integer -> Lua integer, float -> Lua float, text and blob ->
// Lua string (bytes as they are, NUL bytes included), NULL -> absent key.
// Values out: Lua integer -> integer, Lua float -> float (3 stays an
// integer, 3.0 a float), boolean -> integer 1 / 0 (SQLite has no boolean
// type; 1 and 0 are what SQLite's TRUE and FALSE are), string -> text or
// blob by the target column's StringAs (below), absent -> NULL. A returned
// key that is not a target column, a column returned twice (names compare
// exactly, then ASCII case-insensitively), a non-string key, or a value of
// another type (table, function, ...) is a row error naming the column.
//
// Sandbox: the globals are the safe part of the base library (assert, error,
// getmetatable, ipairs, next, pairs, pcall, rawequal, rawget, rawlen, rawset,
// select, setmetatable, tonumber, tostring, type, xpcall, _G, _VERSION) and
// the string (without string.dump), table, math (without math.random and
// math.randomseed) and utf8 libraries. Not there: io, os, require, package,
// debug, coroutine, load, loadstring, dofile, loadfile, collectgarbage,
// print, warn. Reading a global that does not exist is an error ("the
// sandbox has no global 'io'") rather than nil, and Create refuses a chunk
// whose code reads one anywhere (also inside the function body:
// lua_bytecode.h). The chunk may define globals (helper functions) while it
// runs in Create; after that the globals are read-only, so a row cannot
// leave state behind for the next one through them (upvalues still can:
// the function must not keep state between rows — ferry calls it for rows
// in any order, on any worker, and more than once for a retried batch).
// The read-only globals are a guard against mistakes, not a wall: rawset(_G,
// ...) and upvalues get past it. pairs() order is Lua's (unspecified: sort
// keys where order matters), and tostring() of a table or function shows an
// address: neither belongs in a target column.
//
// Limits, per row (and for running the chunk in Create): a budget of Lua VM
// instructions (a count hook, so the same row fails the same way on every
// worker) and a cap on the state's memory (a counting allocator). Over
// either, the row fails with a reason saying which. Time spent inside one
// library call (a pathological string.find pattern) is not counted.
//
// Thread safety: none; an instance is confined to one thread (one per worker
// thread). Instances are independent.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/value.h"

struct lua_State;

namespace ferry {

struct LuaTransformState;  // the Lua state and its bookkeeping (lua_transform.cc)

using ColumnNames = std::vector<std::string>;
using Row = std::vector<Value>;

// What a Lua string returned for a target column becomes.
enum class StringAs {
  kText,        // a TEXT (or other non-binary) column: text
  kBlob,        // a BLOB / bytea column: blob
  kTextIfUtf8,  // no declared type: text when valid UTF-8, else blob
};

// The StringAs of a column by its declared type (either dialect): a type
// naming BLOB or BYTEA -> kBlob; no type -> kTextIfUtf8; any other -> kText
// (the store converts text to the column's type as it converts any text).
StringAs StringAsForType(std::string_view declared_type);

// True if `s` is well-formed UTF-8 (no overlong forms, no surrogates, at
// most U+10FFFF).
bool IsValidUtf8(std::string_view s);

struct TargetColumn {
  std::string name;
  StringAs strings = StringAs::kTextIfUtf8;
};

class LuaTransform {
 public:
  struct Limits {
    int64_t instructions_per_row = 10'000'000;  // about 20-100 ms of Lua
    size_t memory_bytes = size_t{64} << 20;     // the whole state
  };

  // Loads and runs `chunk` (chunk name `name`, as Lua error messages show
  // it: "name:3: ..."). kInvalidArgument (one line, without the spec file
  // or entry: the caller adds them) when the chunk does not compile, fails
  // or exceeds a limit while it runs, uses a global the sandbox does not
  // have, or does not return a function.
  static Result<std::unique_ptr<LuaTransform>> Create(std::string_view chunk,
                                                      const std::string& name, Limits limits);
  static Result<std::unique_ptr<LuaTransform>> Create(std::string_view chunk,
                                                      const std::string& name) {
    return Create(chunk, name, Limits());
  }
  ~LuaTransform();
  LuaTransform(const LuaTransform&) = delete;
  LuaTransform& operator=(const LuaTransform&) = delete;

  // Sets the column names of the rows Apply takes and the target columns it
  // produces, in order. Call before Apply and again when they change.
  // kInvalidArgument if a name repeats within `input` or within `output`.
  Status Bind(const ColumnNames& input, const std::vector<TargetColumn>& output);

  // Transforms one row: `in` holds input.size() values, `out` output.size()
  // values (overwritten; a Text/Blob already there reuses its buffer).
  // Returns true if *out holds the row, false if the function dropped it
  // (out then unspecified), or a row error: kPermanent whose message is the
  // reason, one line for `__ferry_rejects.reason` ("lua: ..."). The state
  // stays usable after a row error.
  Result<bool> Apply(const Value* in, Value* out);

  // Transforms `n` rows in one go (one protected call into Lua for the run,
  // not one per row; each row still has its own budget, and a row error
  // costs one more call): row r's input.size() values at in + r *
  // input.size(). The rows the function keeps are written packed from
  // `out` on (output.size() values each, in row order; a Text/Blob already
  // there reuses its buffer) and listed in applied->kept; a row error is
  // listed in applied->failed with its reason (as Apply's); the dropped
  // rows are counted. kFailedPrecondition before Bind; nothing else fails.
  struct AppliedRows {
    std::vector<size_t> kept;                            // row indices, ascending
    std::vector<std::pair<size_t, std::string>> failed;  // row index, reason
    uint64_t dropped = 0;
  };
  Status ApplyRows(const Value* in, size_t n, Value* out, AppliedRows* applied);

  // Convenience for tests and one-off calls: the row, or nullopt if
  // dropped. `in` must have input.size() values.
  Result<std::optional<Row>> Apply(const Row& in);

  // Bytes the Lua state holds now (for tests and metrics).
  size_t memory_in_use() const;

 private:
  explicit LuaTransform(std::unique_ptr<LuaTransformState> impl);
  std::unique_ptr<LuaTransformState> impl_;
};

}  // namespace ferry
