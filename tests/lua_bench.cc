// ferry-lua-bench: rows per second through the spec's Lua row function
// (spec/lua_transform.h) on one thread, against the same rows copied value
// by value without it. Rows of 5 columns like a typical legacy table: an
// integer key, a short text, a float, a 16-byte blob, a text that is NULL
// every other row.
//
//   build/bin/ferry-lua-bench [--rows 1000000] [--repeat 3]
//
// Prints one line per case: the best of --repeat runs, in thread CPU time
// (so a loaded machine slows the runs down but not the figures much).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "spec/lua_transform.h"

namespace {

using ferry::Blob;
using ferry::LuaTransform;
using ferry::Null;
using ferry::StringAs;
using ferry::Text;
using ferry::Value;

// CPU time of this thread: the figure stays meaningful on a loaded machine.
double ThreadSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("ferry-lua-bench: throughput of the spec's Lua row function");
  size_t rows = 1000000;
  int repeat = 3;
  app.add_option("--rows", rows, "rows per run")->capture_default_str();
  app.add_option("--repeat", repeat, "runs per case (the best is printed)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const size_t width = 5;
  std::vector<Value> in(rows * width);
  for (size_t i = 0; i < rows; ++i) {
    Value* r = in.data() + i * width;
    r[0] = static_cast<int64_t>(i);
    r[1] = Text{"user" + std::to_string(i % 100000) + "@example.org"};
    r[2] = static_cast<double>(i) * 0.25;
    r[3] = Blob{std::string(16, static_cast<char>(i & 0xff))};
    r[4] = i % 2 ? Value(Null{}) : Value(Text{"note " + std::to_string(i)});
  }
  const ferry::ColumnNames names = {"id", "email", "score", "data", "note"};
  const std::vector<ferry::TargetColumn> targets = {{"id", StringAs::kTextIfUtf8},
                                                    {"email", StringAs::kText},
                                                    {"score", StringAs::kTextIfUtf8},
                                                    {"data", StringAs::kBlob},
                                                    {"note", StringAs::kText}};
  std::vector<Value> out(rows * width);

  auto report = [&](const char* what, double best) {
    std::printf("%-24s %9.0f rows/s  (%.3f s CPU for %zu rows, best of %d)\n", what, rows / best,
                best, rows, repeat);
  };

  double best_copy = 1e30;
  for (int r = 0; r < repeat; ++r) {
    const double start = ThreadSeconds();
    for (size_t i = 0; i < rows * width; ++i) out[i] = in[i];
    best_copy = std::min(best_copy, ThreadSeconds() - start);
  }
  report("copy without lua", best_copy);

  const std::pair<const char*, const char*> cases[] = {
      {"identity (return row)", "return function(row) return row end"},
      {"modify one column", "return function(row) row.email = row.email:upper() return row end"},
      {"new table", R"(return function(row)
         return { id = row.id, email = row.email, score = row.score, data = row.data,
                  note = row.note } end)"},
  };
  for (const auto& [what, chunk] : cases) {
    auto t = LuaTransform::Create(chunk, "lua");
    if (!t.ok()) {
      std::fprintf(stderr, "%s: %s\n", what, t.status().message().c_str());
      return 1;
    }
    ferry::Status st = (*t)->Bind(names, targets);
    if (!st.ok()) {
      std::fprintf(stderr, "%s: %s\n", what, st.message().c_str());
      return 1;
    }
    double best = 1e30;
    for (int r = 0; r < repeat; ++r) {
      const double start = ThreadSeconds();
      // In batches of 10,000 rows, as the worker's copy runs them.
      ferry::LuaTransform::AppliedRows applied;
      for (size_t i = 0; i < rows; i += 10000) {
        const size_t n = std::min<size_t>(10000, rows - i);
        st = (*t)->ApplyRows(in.data() + i * width, n, out.data() + i * width, &applied);
        if (!st.ok() || !applied.failed.empty() || applied.kept.size() != n) {
          std::fprintf(stderr, "%s: rows %zu..: %s\n", what, i,
                       st.ok()
                           ? applied.failed.empty() ? "dropped" : applied.failed[0].second.c_str()
                           : st.message().c_str());
          return 1;
        }
      }
      best = std::min(best, ThreadSeconds() - start);
    }
    if (std::string(what).rfind("identity", 0) == 0 && out != in) {
      std::fprintf(stderr, "%s: the rows came back different\n", what);
      return 1;
    }
    report(what, best);
  }
  return 0;
}
