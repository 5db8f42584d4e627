#include "spec/migration_spec.h"

#include <fmt/format.h>
#include <toml++/toml.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/text_util.h"
#include "spec/lua_transform.h"
#include "spec/sql_text.h"

namespace ferry {
namespace {

constexpr const char* kTopKeys[] = {"from_version", "to_version", "table"};
constexpr const char* kTableKeys[] = {"target", "source", "select", "where", "create", "lua"};
constexpr size_t kMaxSpecBytes = size_t{16} << 20;

std::string Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

const char* TypeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

int LineOf(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

// Levenshtein distance, for "did you mean".
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t sub = prev[j - 1] + (std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                                                std::tolower(static_cast<unsigned char>(b[j - 1]))
                                            ? 0
                                            : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

template <size_t N>
std::string UnknownKeyProblem(std::string_view key, const char* const (&known)[N],
                              std::string_view where) {
  std::string hint;
  if (key.size() < 64) {
    for (const char* k : known) {
      if (EditDistance(key, k) <= 2) {
        hint = fmt::format(" (did you mean '{}'?)", k);
        break;
      }
    }
  }
  std::vector<std::string> names(std::begin(known), std::end(known));
  return fmt::format("unknown key '{}'{}; {} {}", key, hint, where, Join(names));
}

std::string Prefix(const std::string& file, int line) {
  return line > 0 ? fmt::format("{}:{}: ", file, line) : file + ": ";
}

Status TopError(const MigrationSpec& spec, int line, std::string_view problem) {
  return InvalidArgument(Prefix(spec.file, line) + std::string(problem));
}

Status EntryError(const MigrationSpec& spec, const TableSpec& t, int line,
                  std::string_view problem) {
  return InvalidArgument(
      fmt::format("{}{}: {}", Prefix(spec.file, line > 0 ? line : t.line), t.Label(), problem));
}

// TOML basic string: quotes, backslashes and control characters escaped.
std::string BasicString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\u{:04X}", c);
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

// A multi-line literal string ('''...''') when that reads better and TOML
// allows it, else a basic string.
std::string TomlString(std::string_view s) {
  bool literal = s.find('\n') != std::string_view::npos &&
                 s.find("'''") == std::string_view::npos && s.front() != '\n' && s.back() != '\'';
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) literal = false;
  }
  if (literal) return "'''\n" + std::string(s) + "'''";
  return BasicString(s);
}

// A value for a one-line message: quoted, control characters shown, at most
// `max` bytes.
std::string Shown(std::string_view s, size_t max = 60) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += c < 0x20 || c == 0x7f ? ' ' : s[i];
  }
  if (s.size() > max) out += "...";
  return out + "'";
}

std::vector<std::string_view> Lines(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t nl = s.find('\n', start);
    out.push_back(
        s.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

// "(a vs b)" for two differing values; multi-line or long ones by their
// first differing line.
std::string ValuesDiffer(std::string_view a, std::string_view b) {
  const bool short_ones = a.size() <= 60 && b.size() <= 60 &&
                          a.find('\n') == std::string_view::npos &&
                          b.find('\n') == std::string_view::npos;
  if (short_ones) return fmt::format("({} vs {})", Shown(a), Shown(b));
  const std::vector<std::string_view> la = Lines(a), lb = Lines(b);
  size_t k = 0;
  while (k < la.size() && k < lb.size() && la[k] == lb[k]) ++k;
  auto line = [&](const std::vector<std::string_view>& l) {
    return k < l.size() ? Shown(l[k]) : std::string("(no such line)");
  };
  return fmt::format("(line {}: {} vs {})", k + 1, line(la), line(lb));
}

std::string VersionText(const std::optional<int64_t>& v) {
  return v ? std::to_string(*v) : std::string("none");
}

// One [[table]] entry.
Status ParseEntry(const toml::table& tbl, int index, MigrationSpec* spec) {
  TableSpec t;
  t.index = index;
  t.line = LineOf(tbl);
  // The target first, so every message can name the entry by it.
  const toml::node* target = tbl.get("target");
  if (target && target->is_string()) t.target = target->as_string()->get();

  // Unknown keys: the first in the file.
  const toml::key* unknown = nullptr;
  for (auto&& [k, v] : tbl) {
    (void)v;
    if (std::find(std::begin(kTableKeys), std::end(kTableKeys), k.str()) != std::end(kTableKeys)) {
      continue;
    }
    if (!unknown || k.source().begin.line < unknown->source().begin.line) unknown = &k;
  }
  if (unknown) {
    return EntryError(*spec, t, static_cast<int>(unknown->source().begin.line),
                      UnknownKeyProblem(unknown->str(), kTableKeys, "an entry takes"));
  }
  struct Field {
    const char* key;
    std::string* value;
    bool trim;
  };
  std::string source;
  bool has_source = false;
  const Field fields[] = {{"target", &t.target, false}, {"source", &source, false},
                          {"select", &t.select, true},  {"where", &t.where, true},
                          {"create", &t.create, true},  {"lua", &t.lua, true}};
  for (const Field& f : fields) {
    const toml::node* n = tbl.get(f.key);
    if (!n) continue;
    if (!n->is_string()) {
      return EntryError(*spec, t, LineOf(*n),
                        fmt::format("'{}' must be a string, not {}", f.key, TypeName(n->type())));
    }
    const std::string& raw = n->as_string()->get();
    *f.value = f.trim ? Trim(raw) : raw;
    if (f.value == &source) has_source = true;
    if (f.value->empty() && f.value != &t.target) {
      return EntryError(*spec, t, LineOf(*n),
                        fmt::format("'{}' is empty; leave the key out for the default", f.key));
    }
  }
  if (!target) {
    return EntryError(*spec, t, 0,
                      "missing 'target' (the name of the table in the new store this entry fills)");
  }
  if (t.target.empty()) return EntryError(*spec, t, LineOf(*target), "empty target");
  t.source = has_source ? source : t.target;
  for (const auto& [key, name] :
       {std::pair<const char*, const std::string*>{"target", &t.target}, {"source", &t.source}}) {
    const int line = LineOf(*tbl.get(has_source && name == &t.source ? "source" : "target"));
    if (Trim(*name) != *name) {
      return EntryError(*spec, t, line,
                        fmt::format("{} {} has leading or trailing spaces", key, Shown(*name)));
    }
    if (name->size() >= 8 && IEquals(name->substr(0, 8), "__ferry_")) {
      return EntryError(*spec, t, line,
                        fmt::format("{} {} is reserved for ferry's own tables", key, Shown(*name)));
    }
  }
  for (const TableSpec& other : spec->tables) {
    if (IEquals(other.target, t.target)) {
      return EntryError(*spec, t, LineOf(*target),
                        fmt::format("two sources for one target: {} also fills \"{}\"",
                                    other.Label(), other.target));
    }
  }
  for (const auto& [key, value] :
       {std::pair<const char*, const std::string*>{"select", &t.select}, {"where", &t.where}}) {
    if (value->empty()) continue;
    Status st = CheckSqlFragment(*value);
    if (!st.ok()) {
      return EntryError(*spec, t, LineOf(*tbl.get(key)), fmt::format("{} {}", key, st.message()));
    }
  }
  if (!t.create.empty()) {
    Status st = CheckCreateTable(t.create, t.target);
    if (!st.ok()) {
      return EntryError(*spec, t, LineOf(*tbl.get("create")), "create " + st.message());
    }
  }
  if (!t.lua.empty()) {
    auto lua = LuaTransform::Create(t.lua, "lua");
    if (!lua.ok()) return EntryError(*spec, t, LineOf(*tbl.get("lua")), lua.status().message());
  }
  spec->tables.push_back(std::move(t));
  return Status::Ok();
}

Status ParseVersion(const toml::table& root, const char* key, MigrationSpec* spec,
                    std::optional<int64_t>* out) {
  const toml::node* n = root.get(key);
  if (!n) return Status::Ok();
  if (!n->is_integer()) {
    return TopError(*spec, LineOf(*n),
                    fmt::format("{} must be an integer, not {}", key, TypeName(n->type())));
  }
  const int64_t v = n->as_integer()->get();
  if (v < 0) return TopError(*spec, LineOf(*n), fmt::format("{} must not be negative", key));
  *out = v;
  return Status::Ok();
}

Status ParseRoot(const toml::table& root, MigrationSpec* spec) {
  const toml::key* unknown = nullptr;
  for (auto&& [k, v] : root) {
    (void)v;
    if (std::find(std::begin(kTopKeys), std::end(kTopKeys), k.str()) != std::end(kTopKeys)) {
      continue;
    }
    if (!unknown || k.source().begin.line < unknown->source().begin.line) unknown = &k;
  }
  if (unknown) {
    return TopError(*spec, static_cast<int>(unknown->source().begin.line),
                    UnknownKeyProblem(unknown->str(), kTopKeys, "a spec has"));
  }
  FERRY_RETURN_IF_ERROR(ParseVersion(root, "from_version", spec, &spec->from_version));
  FERRY_RETURN_IF_ERROR(ParseVersion(root, "to_version", spec, &spec->to_version));
  if (spec->from_version && spec->to_version && *spec->from_version >= *spec->to_version) {
    return TopError(*spec, LineOf(*root.get("from_version")),
                    fmt::format("from_version ({}) must be below to_version ({})",
                                *spec->from_version, *spec->to_version));
  }
  const toml::node* tables = root.get("table");
  const std::string kNoEntries =
      "no [[table]] entries: list each table of the new store as a [[table]] entry with "
      "target = \"name\"";
  if (!tables) return TopError(*spec, 0, kNoEntries);
  if (tables->is_table()) {
    return TopError(*spec, LineOf(*tables),
                    "'table' must be [[table]] entries (an array of tables), not one [table]");
  }
  if (!tables->is_array()) {
    return TopError(*spec, LineOf(*tables),
                    fmt::format("'table' must be [[table]] entries (an array of tables), not {}",
                                TypeName(tables->type())));
  }
  const toml::array& arr = *tables->as_array();
  if (arr.empty()) return TopError(*spec, LineOf(*tables), kNoEntries);
  for (size_t i = 0; i < arr.size(); ++i) {
    const toml::node& n = arr[i];
    if (!n.is_table()) {
      return TopError(
          *spec, LineOf(n),
          fmt::format("[[table]] #{}: must be a table, not {}", i + 1, TypeName(n.type())));
    }
    FERRY_RETURN_IF_ERROR(ParseEntry(*n.as_table(), static_cast<int>(i + 1), spec));
  }
  return Status::Ok();
}

}  // namespace

std::string TableSpec::Label() const {
  if (target.empty()) return fmt::format("[[table]] #{}", index);
  return fmt::format("[[table]] #{} (target \"{}\")", index, target);
}

bool TableSpec::operator==(const TableSpec& o) const {
  return target == o.target && source == o.source && select == o.select && where == o.where &&
         create == o.create && lua == o.lua;
}

std::string MigrationSpec::CanonicalText() const {
  std::string out;
  if (from_version) out += fmt::format("from_version = {}\n", *from_version);
  if (to_version) out += fmt::format("to_version = {}\n", *to_version);
  std::vector<const TableSpec*> sorted;
  for (const TableSpec& t : tables) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const TableSpec* a, const TableSpec* b) { return a->target < b->target; });
  for (const TableSpec* t : sorted) {
    if (!out.empty()) out += "\n";
    out += "[[table]]\n";
    out += "target = " + BasicString(t->target) + "\n";
    out += "source = " + BasicString(t->source) + "\n";
    out += "select = " + TomlString(t->select) + "\n";
    if (!t->where.empty()) out += "where = " + TomlString(t->where) + "\n";
    if (!t->create.empty()) out += "create = " + TomlString(t->create) + "\n";
    if (!t->lua.empty()) out += "lua = " + TomlString(t->lua) + "\n";
  }
  return out;
}

std::string MigrationSpec::Digest() const {
  const std::string text = CanonicalText();
  const XXH128_hash_t h = XXH3_128bits(text.data(), text.size());
  return fmt::format("{:016x}{:016x}", h.high64, h.low64);
}

const TableSpec* MigrationSpec::Find(std::string_view target) const {
  for (const TableSpec& t : tables) {
    if (t.target == target) return &t;
  }
  return nullptr;
}

Status SpecError(const MigrationSpec& spec, const TableSpec& table, std::string_view problem) {
  return EntryError(spec, table, 0, problem);
}

namespace {

// A spec's errors are one line: text quoted from the spec (a token of a
// `create`, a Lua message) may hold line breaks and other control bytes.
Status OnOneLine(Status s) {
  if (s.ok()) return s;
  std::string m = s.message();
  for (char& c : m) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return Status(s.code(), std::move(m));
}

Status ParseSpecTextLines(std::string_view toml, const std::string& name, MigrationSpec* out);

}  // namespace

Status ParseSpecText(std::string_view toml, const std::string& name, MigrationSpec* out) {
  return OnOneLine(ParseSpecTextLines(toml, name, out));
}

namespace {

Status ParseSpecTextLines(std::string_view toml, const std::string& name, MigrationSpec* out) {
  *out = MigrationSpec();
  out->file = name;
  if (toml.size() > kMaxSpecBytes) {
    return TopError(*out, 0,
                    fmt::format("the spec is larger than {} MiB; a spec is a small text file",
                                kMaxSpecBytes >> 20));
  }
  try {
    toml::table root = toml::parse(toml, name);
    return ParseRoot(root, out);
  } catch (const toml::parse_error& e) {
    const auto& pos = e.source().begin;
    std::string desc(e.description());
    for (char& c : desc) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    return InvalidArgument(
        fmt::format("{}:{}:{}: not valid TOML: {}", name, pos.line, pos.column, desc));
  } catch (const std::exception& e) {
    return InvalidArgument(fmt::format("{}: cannot be parsed: {}", name, e.what()));
  }
}

}  // namespace

Result<MigrationSpec> LoadSpecFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return InvalidArgument(
        fmt::format("{}: cannot read the spec file: {}", path, std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return InvalidArgument(fmt::format("{}: cannot read the spec file", path));
  }
  MigrationSpec spec;
  FERRY_RETURN_IF_ERROR(ParseSpecText(text.str(), path, &spec));
  return spec;
}

std::string SpecDifference(const MigrationSpec& recorded, const MigrationSpec& given) {
  if (recorded.CanonicalText() == given.CanonicalText()) return "";
  std::vector<std::string> diffs;
  if (recorded.from_version != given.from_version) {
    diffs.push_back(fmt::format("from_version differs ({} vs {})",
                                VersionText(recorded.from_version),
                                VersionText(given.from_version)));
  }
  if (recorded.to_version != given.to_version) {
    diffs.push_back(fmt::format("to_version differs ({} vs {})", VersionText(recorded.to_version),
                                VersionText(given.to_version)));
  }
  std::vector<std::string> targets;
  for (const TableSpec& t : recorded.tables) targets.push_back(t.target);
  for (const TableSpec& t : given.tables) {
    if (!recorded.Find(t.target)) targets.push_back(t.target);
  }
  std::sort(targets.begin(), targets.end());
  for (const std::string& target : targets) {
    const TableSpec* a = recorded.Find(target);
    const TableSpec* b = given.Find(target);
    if (!b) {
      diffs.push_back(
          fmt::format("table '{}' is in the recorded spec but not in this one", target));
      continue;
    }
    if (!a) {
      diffs.push_back(fmt::format("table '{}' is new in this spec", target));
      continue;
    }
    const std::pair<const char*, std::pair<const std::string*, const std::string*>> fields[] = {
        {"source", {&a->source, &b->source}},
        {"select", {&a->select, &b->select}},
        {"where", {&a->where, &b->where}},
        {"create", {&a->create, &b->create}},
        {"lua", {&a->lua, &b->lua}}};
    for (const auto& [key, values] : fields) {
      if (*values.first == *values.second) continue;
      diffs.push_back(fmt::format("table '{}': {} differs {}", target, key,
                                  ValuesDiffer(*values.first, *values.second)));
    }
  }
  if (diffs.empty()) return "the canonical texts differ";  // not reached: every field is compared
  std::string out = diffs.front();
  if (diffs.size() == 2) out += " (and 1 more difference)";
  if (diffs.size() > 2) out += fmt::format(" (and {} more differences)", diffs.size() - 1);
  return out;
}

Result<VersionPair> CheckSpecVersions(const MigrationSpec& spec, std::optional<int64_t> from_flag,
                                      std::optional<int64_t> to_flag, VersionPair defaults) {
  struct One {
    const char* flag;
    const char* key;
    std::optional<int64_t> flag_value;
    std::optional<int64_t> spec_value;
    int64_t fallback;
  };
  const One ones[] = {
      {"--from-version", "from_version", from_flag, spec.from_version, defaults.from},
      {"--to-version", "to_version", to_flag, spec.to_version, defaults.to}};
  int64_t result[2];
  for (int i = 0; i < 2; ++i) {
    const One& o = ones[i];
    if (o.flag_value && o.spec_value && *o.flag_value != *o.spec_value) {
      return InvalidArgument(fmt::format(
          "{} {} disagrees with {} = {} in the spec {}; make them agree or leave the flag out",
          o.flag, *o.flag_value, o.key, *o.spec_value, spec.file));
    }
    result[i] = o.flag_value ? *o.flag_value : o.spec_value ? *o.spec_value : o.fallback;
  }
  if (result[0] < 0 || result[1] < 0) return InvalidArgument("versions must be non-negative");
  if (result[0] >= result[1]) {
    return InvalidArgument(fmt::format(
        "the migration would go from version {} to version {} (from --from-version/--to-version "
        "and the spec {}): the first must be below the second",
        result[0], result[1], spec.file));
  }
  return VersionPair{result[0], result[1]};
}

}  // namespace ferry
