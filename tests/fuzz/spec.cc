// libFuzzer target: the migration spec parser (spec/migration_spec.h,
// `ferry-coordinator --spec FILE`), on any bytes.
//
// One input is one spec file's text. ParseSpecText never crashes or throws:
// it returns Ok or one kInvalidArgument line (no newline in it). A spec it
// accepts renders to canonical text that parses again to the same spec
// (same canonical text, same digest). Lua chunks in the input are loaded and
// run in the sandbox like any spec's, with its instruction and memory caps.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "spec/migration_spec.h"

namespace {

void Die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_spec: %s\n%s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;  // a spec file is small; keep inputs fast
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  ferry::MigrationSpec spec;
  const ferry::Status s = ferry::ParseSpecText(text, "fuzz.toml", &spec);
  if (!s.ok()) {
    if (s.code() != ferry::Code::kInvalidArgument) Die("error of another kind", s.ToString());
    if (s.message().find('\n') != std::string::npos) Die("multi-line error", s.message());
    return 0;
  }
  const std::string canonical = spec.CanonicalText();
  ferry::MigrationSpec again;
  const ferry::Status s2 = ferry::ParseSpecText(canonical, "canonical.toml", &again);
  if (!s2.ok()) Die("canonical text does not parse", s2.ToString() + "\n" + canonical);
  if (again.CanonicalText() != canonical || again.Digest() != spec.Digest()) {
    Die("canonical text does not round-trip", canonical + "\n---\n" + again.CanonicalText());
  }
  return 0;
}
