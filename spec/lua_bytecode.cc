#include "spec/lua_bytecode.h"

#include <fmt/format.h>

#include <cstdint>
#include <cstring>

namespace ferry {
namespace {

// Lua 5.4 (lopcodes.h): the opcodes this scan looks at, and the iABC layout
// (op: 7 bits, A: 8, k: 1, B: 8, C: 8).
constexpr int kOpGetTabUp = 11;  // R[A] := UpValue[B][K[C]:shortstring]
constexpr int kOpGetField = 14;  // R[A] := R[B][K[C]:shortstring]
int Op(uint32_t i) { return static_cast<int>(i & 0x7f); }
int ArgA(uint32_t i) { return static_cast<int>((i >> 7) & 0xff); }
int ArgB(uint32_t i) { return static_cast<int>((i >> 16) & 0xff); }
int ArgC(uint32_t i) { return static_cast<int>((i >> 24) & 0xff); }

// Constant type tags (lobject.h): strings are the only ones kept.
constexpr int kTagNumInt = 3, kTagNumFlt = 19, kTagShortStr = 4, kTagLongStr = 20;

class DumpReader {
 public:
  explicit DumpReader(std::string_view d) : d_(d) {}

  bool failed() const { return failed_; }

  uint8_t Byte() {
    if (pos_ >= d_.size()) return Fail(), 0;
    return static_cast<uint8_t>(d_[pos_++]);
  }
  std::string_view Bytes(size_t n) {
    if (n > d_.size() - pos_) return Fail(), std::string_view();
    std::string_view out = d_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  // ldump.c dumpSize: 7 bits per byte, most significant first, the last
  // byte marked with 0x80.
  size_t Size() {
    size_t x = 0;
    for (int i = 0; i < 10; ++i) {
      const uint8_t b = Byte();
      if (failed_) return 0;
      x = (x << 7) | (b & 0x7f);
      if (b & 0x80) return x;
    }
    return Fail(), 0;
  }
  // A count that must fit in what is left (each element >= min_bytes).
  size_t Count(size_t min_bytes) {
    const size_t n = Size();
    if (min_bytes > 0 && n > (d_.size() - pos_) / min_bytes) return Fail(), 0;
    return n;
  }
  // ldump.c dumpString: size + 1 (0 = NULL), then the bytes.
  std::string_view String() {
    const size_t n = Size();
    if (n == 0) return {};
    return Bytes(n - 1);
  }

 private:
  void Fail() { failed_ = true; }
  std::string_view d_;
  size_t pos_ = 0;
  bool failed_ = false;
};

struct Proto {
  int linedefined = 0;
  std::vector<uint32_t> code;
  std::vector<std::string> constants;  // non-strings as empty, with is_string false
  std::vector<bool> is_string;
  struct Upvalue {
    bool instack = false;
    int idx = 0;
  };
  std::vector<Upvalue> upvalues;
  std::vector<Proto> protos;
  std::vector<int8_t> lineinfo;
  std::vector<std::pair<int, int>> abslineinfo;  // (pc, line)
};

bool ReadProto(DumpReader& r, Proto* p, int depth) {
  if (depth > 200) return false;
  r.String();  // source
  p->linedefined = static_cast<int>(r.Size());
  r.Size();  // lastlinedefined
  r.Byte();  // numparams
  r.Byte();  // is_vararg
  r.Byte();  // maxstacksize
  const size_t ncode = r.Count(4);
  if (r.failed()) return false;
  std::string_view code = r.Bytes(ncode * 4);
  if (r.failed()) return false;
  p->code.resize(ncode);
  if (ncode > 0) std::memcpy(p->code.data(), code.data(), ncode * 4);
  const size_t nk = r.Count(1);
  for (size_t i = 0; i < nk && !r.failed(); ++i) {
    const int tag = r.Byte();
    if (tag == kTagNumInt || tag == kTagNumFlt) {
      r.Bytes(8);
      p->constants.emplace_back();
      p->is_string.push_back(false);
    } else if (tag == kTagShortStr || tag == kTagLongStr) {
      p->constants.emplace_back(r.String());
      p->is_string.push_back(true);
    } else {  // nil, false, true: no payload
      p->constants.emplace_back();
      p->is_string.push_back(false);
    }
  }
  const size_t nup = r.Count(3);
  for (size_t i = 0; i < nup && !r.failed(); ++i) {
    Proto::Upvalue u;
    u.instack = r.Byte() != 0;
    u.idx = r.Byte();
    r.Byte();  // kind
    p->upvalues.push_back(u);
  }
  const size_t np = r.Count(1);
  for (size_t i = 0; i < np && !r.failed(); ++i) {
    p->protos.emplace_back();
    if (!ReadProto(r, &p->protos.back(), depth + 1)) return false;
  }
  const size_t nline = r.Count(1);
  std::string_view lines = r.Bytes(nline);
  for (char c : lines) p->lineinfo.push_back(static_cast<int8_t>(c));
  const size_t nabs = r.Count(2);
  for (size_t i = 0; i < nabs && !r.failed(); ++i) {
    const int pc = static_cast<int>(r.Size());
    const int line = static_cast<int>(r.Size());
    p->abslineinfo.emplace_back(pc, line);
  }
  const size_t nloc = r.Count(3);
  for (size_t i = 0; i < nloc && !r.failed(); ++i) {
    r.String();
    r.Size();
    r.Size();
  }
  const size_t nupnames = r.Count(1);
  for (size_t i = 0; i < nupnames && !r.failed(); ++i) r.String();
  return !r.failed();
}

// ldebug.c luaG_getfuncline: the nearest absolute line at or before pc,
// then the relative deltas up to pc.
int LineOf(const Proto& p, int pc) {
  if (p.lineinfo.empty()) return 0;
  int basepc = -1;
  int line = p.linedefined;
  for (const auto& [apc, aline] : p.abslineinfo) {
    if (apc > pc) break;
    basepc = apc;
    line = aline;
  }
  while (basepc++ < pc) {
    if (basepc < 0 || static_cast<size_t>(basepc) >= p.lineinfo.size()) return 0;
    line += p.lineinfo[basepc];
  }
  return line;
}

// env[i]: whether upvalue i of `p` is the chunk's _ENV.
void Collect(const Proto& p, const std::vector<bool>& env, std::vector<GlobalUse>* out) {
  auto string_k = [&](int k) -> const std::string* {
    if (k < 0 || static_cast<size_t>(k) >= p.constants.size() || !p.is_string[k]) return nullptr;
    return &p.constants[k];
  };
  for (size_t pc = 0; pc < p.code.size(); ++pc) {
    const uint32_t i = p.code[pc];
    if (Op(i) != kOpGetTabUp) continue;
    const int b = ArgB(i);
    if (b >= static_cast<int>(env.size()) || !env[b]) continue;
    const std::string* name = string_k(ArgC(i));
    if (!name) continue;
    GlobalUse use{*name, "", LineOf(p, static_cast<int>(pc))};
    if (pc + 1 < p.code.size()) {
      const uint32_t next = p.code[pc + 1];
      if (Op(next) == kOpGetField && ArgB(next) == ArgA(i)) {
        if (const std::string* field = string_k(ArgC(next))) use.field = *field;
      }
    }
    out->push_back(std::move(use));
  }
  for (const Proto& child : p.protos) {
    std::vector<bool> child_env(child.upvalues.size(), false);
    for (size_t u = 0; u < child.upvalues.size(); ++u) {
      const Proto::Upvalue& up = child.upvalues[u];
      // An upvalue in the parent's stack is one of its locals (a user's
      // `local _ENV` included): not the chunk's environment.
      child_env[u] = !up.instack && up.idx < static_cast<int>(env.size()) && env[up.idx];
    }
    Collect(child, child_env, out);
  }
}

}  // namespace

Result<std::vector<GlobalUse>> ListGlobalUses(std::string_view dump) {
  static const std::string_view kHeader("\x1bLua\x54\x00\x19\x93\r\n\x1a\n\x04\x08\x08", 15);
  if (dump.size() < 31 || dump.substr(0, kHeader.size()) != kHeader) {
    return InvalidArgument("not a Lua 5.4 binary chunk with 4-byte instructions");
  }
  DumpReader r(dump.substr(31));
  const size_t nup = r.Byte();
  Proto main;
  if (!ReadProto(r, &main, 0))
    return InvalidArgument("truncated or malformed Lua 5.4 binary chunk");
  (void)nup;
  // lua_load sets the main function's first upvalue to the environment.
  std::vector<bool> env(main.upvalues.size(), false);
  if (!env.empty()) env[0] = true;
  std::vector<GlobalUse> out;
  Collect(main, env, &out);
  return out;
}

}  // namespace ferry
