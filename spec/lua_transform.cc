#include "spec/lua_transform.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <lua.hpp>
#include <set>

#include "common/text_util.h"
#include "spec/lua_bytecode.h"

namespace ferry {

// Everything that runs inside the Lua state is C-like: Lua raises errors
// with longjmp, which skips C++ destructors, so the protected C functions
// below hold no C++ object with a destructor across a call that may raise.
struct LuaTransformState {
  struct Memory {
    size_t used = 0;
    size_t limit = 0;
    bool refused = false;  // an allocation was refused since the last reset
  };

  Memory mem;
  lua_State* L = nullptr;
  LuaTransform::Limits limits;
  std::string name;
  bool frozen = false;      // globals read-only (set once the chunk has run)
  bool budget_hit = false;  // the count hook fired since the last reset

  // Bound columns. The main stack holds: 1 the function, 2 the reused row
  // table, then the input names, then the output names (interned Lua
  // strings, so a returned key matches a name by pointer).
  bool bound = false;
  size_t nin = 0;
  size_t nout = 0;
  std::vector<TargetColumn> out_cols;
  std::vector<const char*> out_ptr;
  std::vector<uint8_t> out_is_input;  // exact name also an input column
  std::vector<uint8_t> seen;
  std::string out_list;  // "id, email", for messages
  bool dirty = true;     // the row table may hold keys or a metatable of its own

  // The row being transformed.
  const Value* in = nullptr;
  Value* out = nullptr;
  bool kept = false;

  // The run of rows ApplyRows transforms: row r's cells at rows_in + r *
  // nin; the kept rows' cells packed from rows_out; next_row the row to run.
  const Value* rows_in = nullptr;
  size_t rows_n = 0;
  size_t next_row = 0;
  Value* rows_out = nullptr;
  LuaTransform::AppliedRows* applied = nullptr;  // kept reserved to rows_n

  ~LuaTransformState() {
    if (L) lua_close(L);
  }
};

namespace {

constexpr int kFnSlot = 1;
constexpr int kRowSlot = 2;
constexpr int kNamesSlot = 3;

LuaTransformState* ImplOf(lua_State* L) {
  return *static_cast<LuaTransformState**>(lua_getextraspace(L));
}

void* Allocate(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* m = static_cast<LuaTransformState::Memory*>(ud);
  const size_t old = ptr ? osize : 0;  // without ptr, osize is a type tag
  if (nsize == 0) {
    std::free(ptr);
    m->used -= old;
    return nullptr;
  }
  if (nsize > old && nsize - old > m->limit - std::min(m->limit, m->used)) {
    m->refused = true;
    return nullptr;
  }
  void* p = std::realloc(ptr, nsize);
  if (!p) {
    m->refused = true;
    return nullptr;
  }
  m->used = m->used - old + nsize;
  return p;
}

// Fires after the row's instruction budget; from then on at every
// instruction, so that a pcall in the function cannot swallow it for good.
void CountHook(lua_State* L, lua_Debug*) {
  LuaTransformState* impl = ImplOf(L);
  impl->budget_hit = true;
  lua_sethook(L, CountHook, LUA_MASKCOUNT, 1);
  luaL_error(L, "lua: over the budget of %I instructions for one row (an endless loop?)",
             static_cast<lua_Integer>(impl->limits.instructions_per_row));
}

void ArmBudget(LuaTransformState* impl) {
  impl->budget_hit = false;
  impl->mem.refused = false;
  const int64_t n = impl->limits.instructions_per_row;
  lua_sethook(impl->L, CountHook, LUA_MASKCOUNT,
              static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n, INT32_MAX))));
}

// __index of the global table: reading a global that does not exist.
int StrictIndex(lua_State* L) {
  const char* key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
  return luaL_error(L, "the sandbox has no global '%s'", key);
}

// __newindex of the globals proxy: writes land in the global table while the
// chunk runs, and are refused once it has.
int GuardedNewIndex(lua_State* L) {
  if (ImplOf(L)->frozen) {
    const char* key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
    return luaL_error(L,
                      "the function assigned the global '%s'; globals are read-only once the "
                      "chunk has run (use a local)",
                      key);
  }
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "__index");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

constexpr const char* kRemovedGlobals[] = {"dofile", "loadfile", "load",   "collectgarbage",
                                           "print",  "warn",     "require"};

// Builds the sandbox, loads the chunk (text only), points its _ENV at the
// globals proxy and runs it. Arguments: 1 chunk text, 2 chunk name.
// Returns the chunk's first result and a new row table.
int CreateProtected(lua_State* L) {
  size_t len = 0;
  const char* chunk = lua_tolstring(L, 1, &len);
  const char* name = lua_tostring(L, 2);
  luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
  luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
  luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
  luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
  lua_settop(L, 2);
  lua_pushglobaltable(L);  // 3: the global table
  for (const char* g : kRemovedGlobals) {
    lua_pushnil(L);
    lua_setfield(L, 3, g);
  }
  lua_getfield(L, 3, LUA_MATHLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "random");
  lua_pushnil(L);
  lua_setfield(L, -2, "randomseed");
  lua_pop(L, 1);
  lua_getfield(L, 3, LUA_STRLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  // Hide the string metatable (getmetatable("") returns false).
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 2);
  // The global table: strict reads.
  lua_newtable(L);
  lua_pushcfunction(L, StrictIndex);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, 3);
  // 4: the proxy the chunk sees as _ENV and _G.
  lua_newtable(L);
  lua_newtable(L);
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, GuardedNewIndex);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, 4);
  lua_pushvalue(L, 4);
  lua_setfield(L, 3, LUA_GNAME);
  // 5: the chunk.
  if (luaL_loadbufferx(L, chunk, len, name, "t") != LUA_OK) {
    return luaL_error(L, "lua does not compile: %s", lua_tostring(L, -1));
  }
  lua_pushvalue(L, 4);
  lua_setupvalue(L, 5, 1);
  lua_call(L, 0, 1);  // 5: its result
  lua_newtable(L);    // 6: the row table
  return 2;
}

// Arguments: the names (strings). Returns them interned, unchanged.
int BindProtected(lua_State* L) { return lua_gettop(L); }

// Collects a Lua error after a failed protected call into one line.
std::string ErrorReason(LuaTransformState* impl, int rc) {
  lua_State* L = impl->L;
  std::string msg;
  if (rc == LUA_ERRMEM || impl->mem.refused) {
    msg = fmt::format("lua: not enough memory (the function's state may hold at most {} MiB)",
                      impl->limits.memory_bytes >> 20);
  } else if (impl->budget_hit) {
    msg = fmt::format("lua: over the budget of {} instructions for one row (an endless loop?)",
                      impl->limits.instructions_per_row);
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n = 0;
    const char* s = lua_tolstring(L, -1, &n);
    msg.assign(s, n);
  } else {
    msg = fmt::format("lua: the function raised an error object of type {}", luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  // One line, of a bounded size.
  if (msg.size() > 1000) msg = msg.substr(0, 1000) + "...";
  for (char& c : msg) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  return msg;
}

void SetString(Value* v, const char* p, size_t n, StringAs as) {
  const bool text =
      as == StringAs::kText || (as == StringAs::kTextIfUtf8 && IsValidUtf8(std::string_view(p, n)));
  if (text) {
    if (auto* t = std::get_if<Text>(v)) {
      t->bytes.assign(p, n);
    } else {
      *v = Text{std::string(p, n)};
    }
  } else {
    if (auto* b = std::get_if<Blob>(v)) {
      b->bytes.assign(p, n);
    } else {
      *v = Blob{std::string(p, n)};
    }
  }
}

void PushValue(lua_State* L, const Value& v) {
  switch (v.index()) {
    case 1:
      lua_pushinteger(L, std::get<int64_t>(v));
      break;
    case 2:
      lua_pushnumber(L, std::get<double>(v));
      break;
    case 3: {
      const std::string& s = std::get<Text>(v).bytes;
      lua_pushlstring(L, s.data(), s.size());
      break;
    }
    case 4: {
      const std::string& s = std::get<Blob>(v).bytes;
      lua_pushlstring(L, s.data(), s.size());
      break;
    }
    default:
      lua_pushnil(L);
  }
}

// The target column index a returned key names, or -1. Exact names match
// by pointer (short strings are interned); long or differently cased names
// by comparison.
int FindColumn(const LuaTransformState* impl, const char* key, size_t len, bool* exact) {
  *exact = true;
  for (size_t j = 0; j < impl->nout; ++j) {
    if (impl->out_ptr[j] == key) return static_cast<int>(j);
  }
  const std::string_view k(key, len);
  for (size_t j = 0; j < impl->nout; ++j) {
    if (impl->out_cols[j].name == k) return static_cast<int>(j);
  }
  *exact = false;
  for (size_t j = 0; j < impl->nout; ++j) {
    if (IEquals(impl->out_cols[j].name, k)) return static_cast<int>(j);
  }
  return -1;
}

// One row, inside lua_pcall. Arguments: the main stack's slots (function,
// row table, names), so their indices are the same as there.
int ApplyProtected(lua_State* L) {
  LuaTransformState* impl = ImplOf(L);
  const int nin = static_cast<int>(impl->nin);
  if (impl->dirty) {
    lua_pushnil(L);
    while (lua_next(L, kRowSlot) != 0) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, kRowSlot);  // clearing an existing field during next() is allowed
    }
    lua_pushnil(L);
    lua_setmetatable(L, kRowSlot);
    impl->dirty = false;
  }
  for (int i = 0; i < nin; ++i) {
    lua_pushvalue(L, kNamesSlot + i);
    PushValue(L, impl->in[i]);
    lua_rawset(L, kRowSlot);
  }
  lua_pushvalue(L, kFnSlot);
  lua_pushvalue(L, kRowSlot);
  lua_call(L, 1, 1);
  const int result = lua_gettop(L);
  const int type = lua_type(L, result);
  if (type == LUA_TNIL) {
    impl->dirty = true;
    impl->kept = false;
    return 0;
  }
  if (type != LUA_TTABLE) {
    impl->dirty = true;
    return luaL_error(L,
                      "lua: the function returned a %s; it must return a table of target columns "
                      "or nil to drop the row",
                      lua_typename(L, type));
  }
  if (!lua_rawequal(L, result, kRowSlot)) impl->dirty = true;
  std::memset(impl->seen.data(), 0, impl->nout);
  lua_pushnil(L);
  while (lua_next(L, result) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      impl->dirty = true;
      return luaL_error(L,
                        "lua: the function returned a table with a %s key; its keys must be "
                        "target column names",
                        luaL_typename(L, -2));
    }
    size_t klen = 0;
    const char* key = lua_tolstring(L, -2, &klen);
    bool exact = false;
    const int j = FindColumn(impl, key, klen, &exact);
    if (j < 0) {
      impl->dirty = true;
      return luaL_error(L,
                        "lua: the function returned column '%s', which the target does not have "
                        "(it has %s)",
                        key, impl->out_list.c_str());
    }
    if (!exact || !impl->out_is_input[j]) impl->dirty = true;
    if (impl->seen[j]) {
      impl->dirty = true;
      return luaL_error(L,
                        "lua: the function returned column '%s' twice (as names that differ "
                        "only in case)",
                        impl->out_cols[j].name.c_str());
    }
    impl->seen[j] = 1;
    Value* v = impl->out + j;
    switch (lua_type(L, -1)) {
      case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) {
          *v = static_cast<int64_t>(lua_tointeger(L, -1));
        } else {
          *v = static_cast<double>(lua_tonumber(L, -1));
        }
        break;
      case LUA_TSTRING: {
        size_t n = 0;
        const char* s = lua_tolstring(L, -1, &n);
        SetString(v, s, n, impl->out_cols[j].strings);
        break;
      }
      case LUA_TBOOLEAN:
        *v = static_cast<int64_t>(lua_toboolean(L, -1) ? 1 : 0);
        break;
      default:
        impl->dirty = true;
        return luaL_error(L,
                          "lua: column '%s' is a %s value; a column takes an integer, float, "
                          "string, boolean or nil",
                          impl->out_cols[j].name.c_str(), luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  for (size_t j = 0; j < impl->nout; ++j) {
    if (!impl->seen[j]) impl->out[j] = Null{};
  }
  impl->kept = true;
  return 0;
}

// The rows of a run from next_row on, inside one lua_pcall (same
// arguments as ApplyProtected). A row error raises out of it with next_row
// at the row; ApplyRows records it and calls again from the row after.
int ApplyRowsProtected(lua_State* L) {
  LuaTransformState* impl = ImplOf(L);
  LuaTransform::AppliedRows* applied = impl->applied;
  const int top = lua_gettop(L);
  while (impl->next_row < impl->rows_n) {
    impl->in = impl->rows_in + impl->next_row * impl->nin;
    impl->out = impl->rows_out + applied->kept.size() * impl->nout;
    ArmBudget(impl);
    ApplyProtected(L);
    if (impl->kept) {
      applied->kept.push_back(impl->next_row);  // reserved: never allocates here
    } else {
      ++applied->dropped;
    }
    ++impl->next_row;
    lua_settop(L, top);
  }
  return 0;
}

const std::set<std::string>& ForbiddenGlobals() {
  static const std::set<std::string> kForbidden = {
      "io",       "os",     "require",    "package", "debug",          "coroutine", "load",
      "loadfile", "dofile", "loadstring", "print",   "collectgarbage", "warn"};
  return kForbidden;
}

// A library field the sandbox removed on purpose.
bool ForbiddenField(const GlobalUse& use) {
  return (use.name == "math" && (use.field == "random" || use.field == "randomseed")) ||
         (use.name == "string" && use.field == "dump");
}

std::string Describe(const GlobalUse& use, const std::string& name) {
  const std::string where = fmt::format("{}:{}", name, use.line);
  if (use.field.empty()) {
    if (ForbiddenGlobals().count(use.name)) {
      return fmt::format(
          "lua reaches for '{}' ({}), which the sandbox does not provide (no io, os, require, "
          "load, dofile, loadfile, debug, package, coroutine, collectgarbage, print: a transform "
          "computes a row from a row)",
          use.name, where);
    }
    return fmt::format("lua uses the global '{}' ({}), which is not defined", use.name, where);
  }
  if (use.name == "math") {
    return fmt::format(
        "lua reaches for math.{} ({}), which the sandbox does not provide (a transform must be "
        "deterministic: the same row gives the same result on every worker and every retry)",
        use.field, where);
  }
  if (ForbiddenField(use)) {
    return fmt::format("lua reaches for {}.{} ({}), which the sandbox does not provide", use.name,
                       use.field, where);
  }
  return fmt::format("lua uses {}.{} ({}), which is not defined", use.name, use.field, where);
}

int WriteDump(lua_State*, const void* p, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(static_cast<const char*>(p), n);
  return 0;
}

// The globals the chunk's code reads (lua_bytecode.h): compiled again and
// dumped. Empty when that fails (an unexpected dump format, no memory left):
// the sandbox still enforces at run time.
std::vector<GlobalUse> ChunkGlobalUses(lua_State* L, std::string_view chunk,
                                       const std::string& name) {
  std::string dump;
  if (luaL_loadbufferx(L, chunk.data(), chunk.size(), ("=" + name).c_str(), "t") == LUA_OK) {
    lua_dump(L, WriteDump, &dump, 0);
  }
  lua_pop(L, 1);
  Result<std::vector<GlobalUse>> uses = ListGlobalUses(dump);
  return uses.ok() ? std::move(uses).value() : std::vector<GlobalUse>();
}

// Checks each global use against the global table as it is now (after the
// chunk ran, with what it defined): library tables by field too. With
// `only_forbidden`, only names the sandbox removed on purpose are reported
// (after a failed chunk run, when later definitions may be missing).
Status CheckGlobalUses(lua_State* L, const std::vector<GlobalUse>& uses, const std::string& name,
                       bool only_forbidden) {
  static const std::set<std::string> kLibraries = {"string", "table", "math", "utf8"};
  lua_pushglobaltable(L);
  Status st;
  for (const GlobalUse& use : uses) {
    lua_pushlstring(L, use.name.data(), use.name.size());
    lua_rawget(L, -2);
    const bool present = !lua_isnil(L, -1);
    bool field_present = true;
    if (present && !use.field.empty() && kLibraries.count(use.name) && lua_istable(L, -1)) {
      lua_pushlstring(L, use.field.data(), use.field.size());
      lua_rawget(L, -2);
      field_present = !lua_isnil(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!present && (!only_forbidden || ForbiddenGlobals().count(use.name))) {
      GlobalUse bare = use;
      bare.field.clear();
      st = InvalidArgument(Describe(bare, name));
      break;
    }
    if (!field_present && (!only_forbidden || ForbiddenField(use))) {
      st = InvalidArgument(Describe(use, name));
      break;
    }
  }
  lua_pop(L, 1);
  return st;
}

}  // namespace

StringAs StringAsForType(std::string_view declared_type) {
  const std::string t = ToUpper(declared_type);
  if (t.find("BLOB") != std::string::npos || t.find("BYTEA") != std::string::npos) {
    return StringAs::kBlob;
  }
  if (t.find_first_not_of(" \t\r\n") == std::string::npos) return StringAs::kTextIfUtf8;
  return StringAs::kText;
}

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
      return false;
    }
    i += len;
  }
  return true;
}

LuaTransform::LuaTransform(std::unique_ptr<LuaTransformState> impl) : impl_(std::move(impl)) {}
LuaTransform::~LuaTransform() = default;

Result<std::unique_ptr<LuaTransform>> LuaTransform::Create(std::string_view chunk,
                                                           const std::string& name, Limits limits) {
  auto impl = std::make_unique<LuaTransformState>();
  impl->limits = limits;
  impl->name = name;
  impl->mem.limit = limits.memory_bytes;
  impl->L = lua_newstate(Allocate, &impl->mem);
  if (!impl->L) {
    return InvalidArgument(
        fmt::format("lua: cannot create a Lua state within {} bytes", limits.memory_bytes));
  }
  lua_State* L = impl->L;
  *static_cast<LuaTransformState**>(lua_getextraspace(L)) = impl.get();
  lua_pushcfunction(L, CreateProtected);
  lua_pushlstring(L, chunk.data(), chunk.size());
  lua_pushstring(L, ("=" + name).c_str());
  ArmBudget(impl.get());
  const int rc = lua_pcall(L, 2, 2, 0);
  if (rc != LUA_OK) {
    std::string reason = ErrorReason(impl.get(), rc);
    if (reason.rfind("lua does not compile", 0) == 0) return InvalidArgument(reason);
    // A chunk that fails because it reached for something the sandbox
    // removed: say that rather than "attempt to call a nil value".
    lua_settop(L, 0);
    FERRY_RETURN_IF_ERROR(CheckGlobalUses(L, ChunkGlobalUses(L, chunk, name), name, true));
    return InvalidArgument("lua failed while its chunk ran: " + reason);
  }
  impl->frozen = true;
  if (lua_type(L, kFnSlot) != LUA_TFUNCTION) {
    return InvalidArgument(fmt::format(
        "lua does not return a function (it returns {}): end the chunk with `return "
        "function(row) ... end`",
        lua_isnil(L, kFnSlot) ? "nothing" : std::string("a ") + luaL_typename(L, kFnSlot)));
  }
  FERRY_RETURN_IF_ERROR(CheckGlobalUses(L, ChunkGlobalUses(L, chunk, name), name, false));
  // Rows leave short-lived garbage (their strings): the generational
  // collector handles that best (about 20% faster than incremental).
  lua_gc(L, LUA_GCGEN, 0, 0);
  return std::unique_ptr<LuaTransform>(new LuaTransform(std::move(impl)));
}

Status LuaTransform::Bind(const ColumnNames& input, const std::vector<TargetColumn>& output) {
  LuaTransformState* impl = impl_.get();
  lua_State* L = impl->L;
  std::set<std::string> seen_in;
  for (const std::string& n : input) {
    if (!seen_in.insert(n).second) {
      return InvalidArgument(fmt::format("lua: the input column '{}' appears twice", n));
    }
  }
  std::set<std::string> seen_out;
  for (const TargetColumn& c : output) {
    if (!seen_out.insert(c.name).second) {
      return InvalidArgument(fmt::format("lua: the target column '{}' appears twice", c.name));
    }
  }
  impl->bound = false;
  lua_settop(L, kRowSlot);
  const size_t total = input.size() + output.size();
  if (!lua_checkstack(L, static_cast<int>(2 * total + 16))) {
    return InvalidArgument(fmt::format("lua: too many columns ({})", total));
  }
  lua_pushcfunction(L, BindProtected);
  for (const std::string& n : input) lua_pushlstring(L, n.data(), n.size());
  for (const TargetColumn& c : output) lua_pushlstring(L, c.name.data(), c.name.size());
  impl->mem.refused = false;
  const int rc = lua_pcall(L, static_cast<int>(total), LUA_MULTRET, 0);
  if (rc != LUA_OK) {
    lua_settop(L, kRowSlot);
    return InvalidArgument(ErrorReason(impl, rc));
  }
  impl->nin = input.size();
  impl->nout = output.size();
  impl->out_cols = output;
  impl->out_ptr.assign(output.size(), nullptr);
  impl->out_is_input.assign(output.size(), 0);
  impl->seen.assign(output.size(), 0);
  std::vector<std::string> names;
  const std::set<std::string> inputs(input.begin(), input.end());
  for (size_t j = 0; j < output.size(); ++j) {
    impl->out_ptr[j] = lua_tostring(L, kNamesSlot + static_cast<int>(input.size() + j));
    impl->out_is_input[j] = inputs.count(output[j].name) ? 1 : 0;
    names.push_back(output[j].name);
  }
  impl->out_list = Join(names);
  impl->dirty = true;
  impl->bound = true;
  return Status::Ok();
}

Status LuaTransform::ApplyRows(const Value* in, size_t n, Value* out, AppliedRows* applied) {
  LuaTransformState* impl = impl_.get();
  if (!impl->bound) return FailedPrecondition("LuaTransform::Apply before Bind");
  applied->kept.clear();
  applied->kept.reserve(n);
  applied->failed.clear();
  applied->dropped = 0;
  lua_State* L = impl->L;
  impl->rows_in = in;
  impl->rows_n = n;
  impl->next_row = 0;
  impl->rows_out = out;
  impl->applied = applied;
  const int slots = kRowSlot + static_cast<int>(impl->nin + impl->nout);
  while (impl->next_row < n) {
    lua_pushcfunction(L, ApplyRowsProtected);
    for (int i = 1; i <= slots; ++i) lua_pushvalue(L, i);
    const int rc = lua_pcall(L, slots, 0, 0);
    if (rc == LUA_OK) break;
    impl->dirty = true;
    applied->failed.emplace_back(impl->next_row, ErrorReason(impl, rc));
    ++impl->next_row;
  }
  impl->applied = nullptr;
  return Status::Ok();
}

Result<bool> LuaTransform::Apply(const Value* in, Value* out) {
  AppliedRows applied;
  FERRY_RETURN_IF_ERROR(ApplyRows(in, 1, out, &applied));
  if (!applied.failed.empty()) return Permanent(std::move(applied.failed[0].second));
  return !applied.kept.empty();
}

Result<std::optional<Row>> LuaTransform::Apply(const Row& in) {
  if (in.size() != impl_->nin) {
    return InvalidArgument(
        fmt::format("lua: a row of {} values for {} input columns", in.size(), impl_->nin));
  }
  Row out(impl_->nout);
  FERRY_ASSIGN_OR_RETURN(bool kept, Apply(in.data(), out.data()));
  if (!kept) return std::optional<Row>();
  return std::optional<Row>(std::move(out));
}

size_t LuaTransform::memory_in_use() const { return impl_->mem.used; }

}  // namespace ferry
