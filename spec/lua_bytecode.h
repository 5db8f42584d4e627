// Reads the global names a compiled Lua 5.4 chunk uses, from its binary
// dump (lua_dump with debug information), so that a spec can be refused
// before any row is read when its Lua reaches for something the sandbox does
// not provide (`io.write`, `os.time()`, `math.random()`, a misspelt
// `strng.upper`) — even inside a function body that only runs per row.
//
// What is found: every read of a global (`io`, `_ENV.io`: GETTABUP on the
// chunk's _ENV upvalue, through any depth of nested functions), and for a
// global immediately indexed by a constant name (`math.random`,
// `string.unpack`: GETTABUP followed by GETFIELD on its result) that field
// name too. What is not: names computed at run time (`_ENV[k]`), globals
// reached through an alias (`local m = math; m.random()`), globals whose
// name is longer than 40 bytes. The sandbox itself (lua_transform.h) is what
// enforces; this scan only makes the common mistakes fail early.
//
// The dump format is Lua 5.4's (checked in the header: version 0x54, format
// 0, 4-byte instructions, 8-byte integers and floats); any other input is
// kInvalidArgument. Thread safety: a pure function.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ferry {

struct GlobalUse {
  std::string name;   // the global: "io", "math"
  std::string field;  // the constant field read from it right away ("random"), or empty
  int line = 0;       // line in the chunk (1-based); 0 when unknown
};

// Global uses in source order within each function, outer functions first.
Result<std::vector<GlobalUse>> ListGlobalUses(std::string_view dump);

}  // namespace ferry
