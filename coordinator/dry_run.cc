#include "coordinator/dry_run.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include "common/key_codec.h"
#include "coordinator/job_setup.h"
#include "coordinator/planner.h"
#include "coordinator/version_check.h"
#include "spec/target_plan.h"
#include "stores/store.h"
#include "stores/table_checks.h"

namespace ferry {
namespace {

constexpr size_t kRowsShown = 3;
constexpr size_t kReadRows = 1000;  // per read while looking for the rows to show

// A cell as KeyToString prints a key element: 42, 'text', x'00ff', NULL.
std::string CellText(const Value& v) {
  const std::string s = KeyToString(EncodeKey(&v, 1));
  return s.size() >= 2 ? s.substr(1, s.size() - 2) : s;
}

std::string RowText(const TableSchema& write, const Value* cells) {
  std::vector<std::string> names = CellNames(write, RowidAlias(write.columns));
  std::string out;
  for (size_t c = 0; c < names.size(); ++c) {
    out += fmt::format("{}{} = {}", c ? ", " : "", names[c], CellText(cells[c]));
  }
  return out;
}

bool SqliteFileMissing(const std::string& uri) {
  if (uri.rfind("sqlite:", 0) != 0) return false;
  std::string path = uri.substr(7);
  if (path.rfind("//", 0) == 0) path = path.substr(2);
  struct stat st;
  return ::stat(path.c_str(), &st) != 0;
}

// The first rows of `plan`'s table in key order, as they would be written.
Status ShowRows(Store& source, const TargetPlan& plan, std::ostream& out) {
  std::unique_ptr<LuaTransform> lua;
  if (plan.has_lua()) {
    FERRY_ASSIGN_OR_RETURN(lua, MakeTransform(plan));
  }
  const KeyRange all{plan.source.name, "", ""};
  std::string after;
  size_t shown = 0;
  RowBatch read, kept;
  while (shown < kRowsShown) {
    FERRY_RETURN_IF_ERROR(
        source.ReadProjected(plan.source, plan.projection, all, after, kReadRows, 8 << 20, &read));
    if (read.rows() == 0) break;
    after = read.keys.back();
    std::vector<Reject> rejects;
    TransformBatch(plan, lua.get(), read, &kept, &rejects);
    // Kept rows and rejects, merged back into key order.
    size_t k = 0, j = 0;
    for (size_t r = 0; r < read.rows() && shown < kRowsShown; ++r) {
      const std::string key_text = KeyToFullString(read.keys[r]);
      if (k < kept.rows() && kept.keys[k] == read.keys[r]) {
        out << fmt::format("    {} -> {}\n", key_text, RowText(plan.write, kept.row(k)));
        ++k;
        ++shown;
      } else if (j < rejects.size() && rejects[j].source_key == key_text) {
        out << fmt::format("    {} -> rejected: {}\n", key_text, rejects[j].reason);
        ++j;
        ++shown;
      }
    }
  }
  if (shown == 0) out << "    (no rows)\n";
  return Status::Ok();
}

}  // namespace

Status DryRun(const CoordinatorOptions& given, std::ostream& out) {
  CoordinatorOptions opt = given;
  if (opt.state_path.empty()) opt.state_path = "(dry run)";  // never opened
  FERRY_RETURN_IF_ERROR(ValidateFlags(opt));
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<Store> source,
                         OpenStore(opt.source_uri, StoreRole::kSource));
  std::optional<int64_t> target_version;
  if (!SqliteFileMissing(opt.target_uri)) {
    auto peek = OpenStore(opt.target_uri, StoreRole::kSource);
    if (peek.ok()) {
      FERRY_ASSIGN_OR_RETURN(target_version, (*peek)->ReadVersion());
    }
  }
  FERRY_ASSIGN_OR_RETURN(std::optional<int64_t> legacy_version, source->ReadVersion());
  FERRY_ASSIGN_OR_RETURN(VersionVerdict verdict, CheckVersions(opt.from_version, opt.to_version,
                                                               target_version, legacy_version));
  FERRY_ASSIGN_OR_RETURN(std::vector<TargetPlan> targets,
                         ResolveJobTargets(opt, *source, opt.tables));
  out << fmt::format("ferry dry run: {} -> {}, version {} -> {}{}; nothing is written\n",
                     RedactUri(opt.source_uri), RedactUri(opt.target_uri), opt.from_version,
                     opt.to_version, opt.spec ? ", spec " + opt.spec->file : "");
  if (verdict == VersionVerdict::kAlreadyDone) {
    out << fmt::format("the new store is already at version {}: a real run would do nothing\n",
                       opt.to_version);
  }
  uint64_t total_ranges = 0;
  for (const TargetPlan& t : targets) {
    std::vector<RangeRecord> ranges;
    FERRY_RETURN_IF_ERROR(PlanTable(*source, t.source, opt.range_rows, &ranges));
    total_ranges += ranges.size();
    uint64_t rows = 0;
    for (const RangeRecord& r : ranges) rows += r.est_rows;
    out << fmt::format("\ntable {} (from {}{}{}{})\n", t.entry.target, t.source.name,
                       t.projection.star() ? "" : ", select " + t.projection.select,
                       t.projection.where.empty() ? "" : ", where " + t.projection.where,
                       t.has_lua() ? ", lua" : "");
    FERRY_ASSIGN_OR_RETURN(std::vector<std::string> ddl, TargetDdl(opt.target_uri, t.target));
    out << "  DDL:\n";
    for (std::string statement : ddl) {
      for (size_t at = statement.find('\n'); at != std::string::npos;
           at = statement.find('\n', at + 5)) {
        statement.replace(at, 1, "\n    ");
      }
      out << "    " << statement << ";\n";
    }
    out << fmt::format("  ranges: {} (about {} legacy rows)\n", ranges.size(), rows);
    out << fmt::format("  first {} rows in key order (legacy key -> new row):\n", kRowsShown);
    FERRY_RETURN_IF_ERROR(ShowRows(*source, t, out));
  }
  out << fmt::format("\n{} table(s), {} range(s)\n", targets.size(), total_ranges);
  return Status::Ok();
}

}  // namespace ferry
