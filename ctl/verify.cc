#include "ctl/verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "common/digest.h"
#include "common/file_checks.h"
#include "common/key_codec.h"
#include "common/text_util.h"
#include "coordinator/state_store.h"
#include "spec/migration_spec.h"
#include "spec/target_plan.h"
#include "stores/store.h"
#include "stores/table_checks.h"

namespace ferry {
namespace {

constexpr size_t kMaxBytes = 16u << 20;  // per batch and store

struct PlannedRange {
  uint64_t id = 0;
  KeyRange range;
  RangeState state = RangeState::kPending;
  uint64_t rows = 0;
  uint64_t digest = 0;
  uint64_t rejected = 0;
};

struct Job {
  std::string source_uri;
  std::string target_uri;
  std::string spec_text;  // the migration spec's canonical text; empty: none
  std::vector<PlannedRange> ranges;
};

// The job's URIs and plan, through the state store's read-only API.
Result<Job> ReadJob(const std::string& state_path) {
  if (!IsPgStateLocation(state_path)) {
    FERRY_RETURN_IF_ERROR(CheckSqliteFile("--state", state_path, FileUse::kRead));
  }
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<StateReader> state, OpenStateReader(state_path));
  FERRY_ASSIGN_OR_RETURN(std::optional<JobMeta> meta, state->LoadJob());
  if (!meta) {
    return InvalidArgument(
        fmt::format("state file {} holds no job yet (check --state)", state_path));
  }
  FERRY_ASSIGN_OR_RETURN(std::vector<RangeRecord> ranges, state->LoadRanges());
  Job out;
  out.source_uri = meta->source_uri;
  out.target_uri = meta->target_uri;
  out.spec_text = meta->spec_text;
  for (RangeRecord& rr : ranges) {
    PlannedRange r;
    r.id = rr.id;
    r.range = KeyRange{std::move(rr.table), std::move(rr.lo), std::move(rr.hi)};
    r.state = rr.state;
    r.rows = rr.rows;
    r.digest = rr.digest;
    r.rejected = rr.rejected;
    out.ranges.push_back(std::move(r));
  }
  return out;
}

// The canonical bytes of one cell: its key-element encoding, which tells
// storage classes apart (what the range digest folds).
std::string CellBytes(const Value& v) {
  std::string out;
  AppendKeyElement(v, &out);
  return out;
}

// A number written as text: the whole string must parse.
std::optional<double> ParseNumber(const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double d = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || errno == ERANGE) return std::nullopt;
  return d;
}

std::optional<double> AsNumber(const Value& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* t = std::get_if<Text>(&v)) return ParseNumber(t->bytes);
  if (const auto* b = std::get_if<Blob>(&v)) return ParseNumber(b->bytes);
  return std::nullopt;
}

// Between engines (SQLite <-> PostgreSQL) a cell may change storage class
// as the documented type mapping converts it (an integer into a bytea column
// becomes its decimal text's bytes, a real into numeric is read back as the
// exact decimal text, text into bytea becomes its bytes): the same value
// if the bytes are the same, or if both sides are numbers of equal value.
bool SameValueAcrossEngines(const Value& x, const Value& y) {
  if (x.index() == 0 || y.index() == 0) return false;  // NULL only equals NULL (exact)
  const auto* tx = std::get_if<Text>(&x);
  const auto* bx = std::get_if<Blob>(&x);
  const auto* ty = std::get_if<Text>(&y);
  const auto* by = std::get_if<Blob>(&y);
  if ((tx || bx) && (ty || by)) return (tx ? tx->bytes : bx->bytes) == (ty ? ty->bytes : by->bytes);
  const auto* ix = std::get_if<int64_t>(&x);
  const auto* iy = std::get_if<int64_t>(&y);
  // An integer and text: the same decimal digits, or (text '007', '7.0')
  // a number of the same value where a double holds the integer exactly.
  if ((ix && (ty || by)) || (iy && (tx || bx))) {
    const int64_t i = ix ? *ix : *iy;
    const std::string& text = ix ? (ty ? ty->bytes : by->bytes) : (tx ? tx->bytes : bx->bytes);
    if (text == std::to_string(i)) return true;
    std::optional<double> d = ParseNumber(text);
    return d && std::fabs(static_cast<double>(i)) <= 9007199254740992.0 &&
           *d == static_cast<double>(i);
  }
  std::optional<double> nx = AsNumber(x), ny = AsNumber(y);
  return nx && ny && (*nx == *ny || (std::isnan(*nx) && std::isnan(*ny)));
}

// A cell as KeyToString prints a key element: 42, 'text', x'00ff', NULL.
std::string CellText(const Value& v) {
  const std::string s = KeyToString(EncodeKey(&v, 1));  // "(...)"
  return s.size() >= 2 ? s.substr(1, s.size() - 2) : s;
}

// Reads one store's side of a range batch by batch, in key order.
class RangeReader {
 public:
  RangeReader(Store* store, const TableSchema* table, const KeyRange& range, size_t batch_rows)
      : store_(store), table_(table), range_(range), batch_rows_(batch_rows) {}

  // Makes the current row valid, reading the next batch when needed; false
  // at the end of the range.
  Result<bool> Valid() {
    if (pos_ < batch_.rows()) return true;
    if (done_) return false;
    FERRY_RETURN_IF_ERROR(
        store_->ReadBatch(*table_, range_, after_, batch_rows_, kMaxBytes, &batch_));
    pos_ = 0;
    if (batch_.rows() == 0) {
      done_ = true;
      return false;
    }
    after_ = batch_.keys.back();
    return true;
  }
  const std::string& key() const { return batch_.keys[pos_]; }
  const Value* row() const { return batch_.row(pos_); }
  size_t width() const { return batch_.width; }
  // The digest bytes of the current row (common/digest.h).
  const std::string& RowBytes() {
    scratch_.assign(key());
    for (size_t c = 0; c < batch_.width; ++c) AppendKeyElement(row()[c], &scratch_);
    return scratch_;
  }
  void Next() { ++pos_; }

 private:
  Store* store_;
  const TableSchema* table_;
  const KeyRange& range_;
  size_t batch_rows_;
  RowBatch batch_;
  size_t pos_ = 0;
  std::string after_;
  bool done_ = false;
  std::string scratch_;
};

class Verifier {
 public:
  // A target of the recorded spec: its plan, its Lua function, the legacy
  // keys __ferry_rejects lists for it.
  struct Spec {
    TargetPlan plan;
    std::unique_ptr<LuaTransform> lua;
    std::set<std::string> rejected;
  };

  Verifier(const VerifyOptions& opt, VerifyReport* report) : opt_(opt), report_(report) {}

  Status Open(const Job& job) {
    const std::string src = opt_.source_uri.empty() ? job.source_uri : opt_.source_uri;
    const std::string dst = opt_.target_uri.empty() ? job.target_uri : opt_.target_uri;
    report_->source = RedactUri(src);
    report_->target = RedactUri(dst);
    FERRY_ASSIGN_OR_RETURN(source_, OpenStore(src, StoreRole::kSource));
    FERRY_ASSIGN_OR_RETURN(target_, OpenStore(dst, StoreRole::kSource));
    FERRY_ASSIGN_OR_RETURN(std::vector<TableSchema> s, source_->ListTables());
    FERRY_ASSIGN_OR_RETURN(std::vector<TableSchema> t, target_->ListTables());
    if (!job.spec_text.empty()) {
      // The same targets the workers resolved: the recorded spec, the stores.
      spec_.emplace();
      FERRY_RETURN_IF_ERROR(ParseSpecText(job.spec_text, "the recorded spec", &*spec_));
      FERRY_ASSIGN_OR_RETURN(std::vector<TargetPlan> plans,
                             ResolveTargets(&*spec_, *source_, s, {}, dst));
      for (TargetPlan& p : plans) {
        Spec& one = specs_[p.entry.target];
        one.plan = std::move(p);
        if (one.plan.has_lua()) {
          FERRY_ASSIGN_OR_RETURN(one.lua, MakeTransform(one.plan));
        }
        FERRY_ASSIGN_OR_RETURN(std::vector<Reject> rejects,
                               target_->ReadRejects(one.plan.entry.target, SIZE_MAX));
        for (Reject& r : rejects) one.rejected.insert(std::move(r.source_key));
      }
    }
    for (auto& x : s) source_tables_[x.name] = std::move(x);
    for (auto& x : t) target_tables_[x.name] = std::move(x);
    return Status::Ok();
  }

  // A range of a migration spec's target: the legacy rows read through the
  // spec (select, where, Lua function), minus the rows __ferry_rejects lists,
  // against the new store's rows, matched by the TARGET key.
  Status CheckSpecRange(const PlannedRange& r, const std::string& where, Spec& one) {
    const TargetPlan& plan = one.plan;
    auto t = target_tables_.find(plan.target.name);
    if (t == target_tables_.end()) {
      Differ(where, fmt::format("the new store has no table {}", plan.target.name));
      return Status::Ok();
    }
    const TableSchema& have = t->second;
    // Where each written cell is among the new table's cells.
    const std::vector<std::string> have_cells = CellNames(have, RowidAlias(have.columns));
    const std::vector<std::string> write_cells =
        CellNames(plan.write, RowidAlias(plan.write.columns));
    std::vector<size_t> at;
    for (const std::string& name : write_cells) {
      size_t i = 0;
      while (i < have_cells.size() && !IEquals(have_cells[i], name)) ++i;
      if (i == have_cells.size()) {
        Differ(where, fmt::format("the new store's table {} has no column {}", have.name, name));
        return Status::Ok();
      }
      at.push_back(i);
    }
    std::vector<size_t> key_cells;
    if (plan.write.rowid_key()) {
      key_cells.push_back(0);
    } else {
      key_cells = plan.write.key_columns;
    }

    // The expected rows, with their target keys.
    struct Expected {
      std::string key;         // target key
      std::string source_key;  // legacy key, as verify prints keys
      std::vector<Value> cells;
    };
    std::vector<Expected> expected;
    uint64_t digest = 0, rejected = 0, read_rows = 0;
    std::string after, scratch;
    RowBatch read, kept;
    const KeyRange source_range{plan.source.name, r.range.lo, r.range.hi};
    for (;;) {
      FERRY_RETURN_IF_ERROR(source_->ReadProjected(plan.source, plan.projection, source_range,
                                                   after, opt_.batch_rows, kMaxBytes, &read));
      if (read.rows() == 0) break;
      after = read.keys.back();
      read_rows += read.rows();
      digest = FoldDigest(digest, read, &scratch);
      std::vector<Reject> failed;
      TransformBatch(plan, one.lua.get(), read, &kept, &failed);
      for (const Reject& f : failed) {
        ++rejected;
        if (!one.rejected.count(f.source_key)) {
          Differ(where, fmt::format("legacy key {}: the spec fails on it ({}), but {} does not "
                                    "list it",
                                    f.source_key, f.reason, kRejectsTable));
        }
      }
      for (size_t i = 0; i < kept.rows(); ++i) {
        std::string source_key = KeyToFullString(kept.keys[i]);
        if (one.rejected.count(source_key)) {
          ++rejected;  // the new store refused it: expected absent
          continue;
        }
        Expected e;
        e.source_key = std::move(source_key);
        e.cells.assign(kept.row(i), kept.row(i) + kept.width);
        std::vector<Value> key_values;
        for (size_t k : key_cells) key_values.push_back(e.cells[k]);
        e.key = EncodeKey(key_values);
        expected.push_back(std::move(e));
      }
    }
    report_->rows_checked += read_rows;
    std::sort(expected.begin(), expected.end(),
              [](const Expected& a, const Expected& b) { return a.key < b.key; });

    auto compare = [&](const Expected& e, const Value* cells) {
      for (size_t c = 0; c < e.cells.size(); ++c) {
        const Value& x = e.cells[c];
        const Value& y = cells[at[c]];
        if (CellBytes(x) == CellBytes(y)) continue;
        // The new store's column converts what it is given (an affinity, a
        // type): the same value in another storage class is no difference.
        if (SameValueAcrossEngines(x, y)) {
          ++report_->cells_converted;
          continue;
        }
        Differ(where, fmt::format("legacy key {}: column {} is {} by the spec, {} in the new store",
                                  e.source_key, write_cells[c], CellText(x), CellText(y)));
        return;
      }
    };
    // Target keys inside the range's own bounds (the usual case: the key is
    // the legacy key carried under another name): the new store's rows of
    // the same bounds are exactly the range's, extra rows included.
    bool in_bounds = true;
    for (const Expected& e : expected) {
      if ((!r.range.lo.empty() && e.key < r.range.lo) ||
          (!r.range.hi.empty() && e.key >= r.range.hi)) {
        in_bounds = false;
        break;
      }
    }
    if (in_bounds) {
      const KeyRange target_range{have.name, r.range.lo, r.range.hi};
      RangeReader b(target_.get(), &have, target_range, opt_.batch_rows);
      size_t i = 0;
      for (;;) {
        FERRY_ASSIGN_OR_RETURN(bool have_b, b.Valid());
        if (i == expected.size() && !have_b) break;
        const int cmp = i == expected.size() ? 1 : !have_b ? -1 : expected[i].key.compare(b.key());
        if (cmp < 0) {
          Differ(where, fmt::format("legacy key {}: its row (key {}) is missing from the new store",
                                    expected[i].source_key, KeyToString(expected[i].key)));
        } else if (cmp > 0) {
          Differ(where, fmt::format("key {} is in the new store but no legacy row of the range "
                                    "gives it",
                                    KeyToString(b.key())));
        } else {
          compare(expected[i], b.row());
        }
        if (cmp <= 0) ++i;
        if (cmp >= 0) b.Next();
      }
    } else {
      // A function that computes other keys: each expected row looked up by
      // its key (extra rows in the new store are not detected for the range).
      ++report_->ranges_looked_up;
      RowBatch one_row;
      for (const Expected& e : expected) {
        FERRY_RETURN_IF_ERROR(
            target_->ReadBatch(have, KeyRange{have.name, e.key, ""}, "", 1, kMaxBytes, &one_row));
        if (one_row.rows() == 0 || one_row.keys[0] != e.key) {
          Differ(where, fmt::format("legacy key {}: its row (key {}) is missing from the new store",
                                    e.source_key, KeyToString(e.key)));
        } else {
          compare(e, one_row.row(0));
        }
      }
    }
    if (expected.size() != r.rows || digest != r.digest || rejected != r.rejected) {
      Differ(where,
             fmt::format("the legacy rows no longer match what was copied ({} rows written, {} "
                         "rejected, digest {:016x}; recorded {}, {}, {:016x}): the legacy store "
                         "was written to after this range was copied",
                         expected.size(), rejected, digest, r.rows, r.rejected, r.digest));
    }
    return Status::Ok();
  }

  Status Check(const PlannedRange& r) {
    const std::string where = fmt::format("range {} (table {}, keys {} .. {})", r.id, r.range.table,
                                          r.range.lo.empty() ? "start" : KeyToString(r.range.lo),
                                          r.range.hi.empty() ? "end" : KeyToString(r.range.hi));
    if (spec_) {
      auto one = specs_.find(r.range.table);
      if (one == specs_.end()) {
        return NotFound(
            fmt::format("{}: the recorded spec has no target {}", where, r.range.table));
      }
      return CheckSpecRange(r, where, one->second);
    }
    auto s = source_tables_.find(r.range.table);
    if (s == source_tables_.end()) {
      return NotFound(fmt::format("{}: the legacy store {} has no table {} (check --source)", where,
                                  report_->source, r.range.table));
    }
    auto t = target_tables_.find(r.range.table);
    if (t == target_tables_.end()) {
      Differ(where, fmt::format("the new store has no table {}", r.range.table));
      return Status::Ok();
    }
    if (s->second.width() != t->second.width()) {
      Differ(where, fmt::format("the new store's table has {} cells per row, the legacy's {}",
                                t->second.width(), s->second.width()));
      return Status::Ok();
    }
    RangeReader a(source_.get(), &s->second, r.range, opt_.batch_rows);
    RangeReader b(target_.get(), &t->second, r.range, opt_.batch_rows);
    uint64_t digest = 0, rows = 0;
    for (;;) {
      FERRY_ASSIGN_OR_RETURN(bool have_a, a.Valid());
      FERRY_ASSIGN_OR_RETURN(bool have_b, b.Valid());
      if (!have_a && !have_b) break;
      const int cmp = !have_a ? 1 : !have_b ? -1 : a.key().compare(b.key());
      if (cmp < 0) {
        Differ(where, fmt::format("key {} is missing from the new store", KeyToString(a.key())));
      } else if (cmp > 0) {
        Differ(where, fmt::format("key {} is in the new store but not in the legacy store",
                                  KeyToString(b.key())));
      }
      if (cmp <= 0) {
        // The legacy row's digest bytes serve the digest and, when the new
        // store has the key, the comparison: equal bytes, equal row (cell by
        // cell only when they differ).
        const std::string& bytes = a.RowBytes();
        if (cmp == 0 && bytes != b.RowBytes()) {
          CompareCells(where, a, b, s->second, s->second.dialect != t->second.dialect);
        }
        digest = FoldRowBytes(digest, bytes);
        ++rows;
        a.Next();
      }
      if (cmp >= 0) b.Next();
    }
    report_->rows_checked += rows;
    if (rows != r.rows || digest != r.digest) {
      Differ(where, fmt::format("the legacy rows no longer match what was copied ({} rows, "
                                "digest {:016x}; recorded {} rows, digest {:016x}): the legacy "
                                "store was written to after this range was copied",
                                rows, digest, r.rows, r.digest));
    }
    return Status::Ok();
  }

 private:
  void CompareCells(const std::string& where, RangeReader& a, RangeReader& b,
                    const TableSchema& table, bool cross_engine) {
    for (size_t c = 0; c < a.width(); ++c) {
      const Value& x = a.row()[c];
      const Value& y = b.row()[c];
      if (CellBytes(x) == CellBytes(y)) continue;
      if (cross_engine && SameValueAcrossEngines(x, y)) {
        ++report_->cells_converted;
        continue;
      }
      const size_t col = table.rowid_key() ? c - 1 : c;
      const std::string name = table.rowid_key() && c == 0 ? "rowid" : table.columns.at(col).name;
      Differ(where, fmt::format("key {}: column {} is {} in the legacy store, {} in the new store",
                                KeyToString(a.key()), name, CellText(x), CellText(y)));
      return;  // one line per row
    }
  }

  void Differ(const std::string& where, const std::string& what) {
    ++report_->differences;
    if (report_->described.size() < opt_.max_differences) {
      report_->described.push_back(where + ": " + what);
    }
  }

  const VerifyOptions& opt_;
  VerifyReport* report_;
  std::optional<MigrationSpec> spec_;
  std::map<std::string, Spec> specs_;
  std::unique_ptr<Store> source_;
  std::unique_ptr<Store> target_;
  std::map<std::string, TableSchema> source_tables_;
  std::map<std::string, TableSchema> target_tables_;
};

}  // namespace

Result<VerifyReport> VerifyMigration(const VerifyOptions& opt,
                                     const std::function<void(uint64_t, uint64_t)>& progress) {
  if (opt.batch_rows == 0) return InvalidArgument("--batch-rows must be at least 1");
  FERRY_ASSIGN_OR_RETURN(Job job, ReadJob(opt.state_path));
  VerifyReport report;
  Verifier v(opt, &report);
  FERRY_RETURN_IF_ERROR(v.Open(job));
  report.ranges_total = job.ranges.size();
  uint64_t seen = 0;
  for (const PlannedRange& r : job.ranges) {
    if (r.state != RangeState::kDone) {
      ++report.ranges_skipped;
    } else {
      const uint64_t before = report.differences;
      FERRY_RETURN_IF_ERROR(v.Check(r));
      ++report.ranges_checked;
      if (report.differences > before) ++report.ranges_differing;
    }
    if (progress) progress(++seen, report.ranges_total);
  }
  return report;
}

nlohmann::json VerifyReportJson(const VerifyReport& r) {
  return {{"equal", r.equal()},
          {"source", r.source},
          {"target", r.target},
          {"ranges_total", r.ranges_total},
          {"ranges_checked", r.ranges_checked},
          {"ranges_skipped", r.ranges_skipped},
          {"ranges_differing", r.ranges_differing},
          {"rows_checked", r.rows_checked},
          {"cells_converted", r.cells_converted},
          {"ranges_looked_up", r.ranges_looked_up},
          {"differences", r.differences},
          {"described", r.described}};
}

std::string RenderVerifyReport(const VerifyReport& r) {
  std::string out;
  for (const std::string& line : r.described) out += "difference: " + line + "\n";
  if (r.differences > r.described.size()) {
    out += fmt::format("... and {} more (raise --max-differences to see them)\n",
                       r.differences - r.described.size());
  }
  if (r.ranges_looked_up > 0) {
    out += fmt::format(
        "note: in {} range(s) the spec computes keys outside the range's legacy keys: their rows "
        "were looked up one by one, and rows the new store has beyond them were not looked for\n",
        r.ranges_looked_up);
  }
  if (r.cells_converted > 0) {
    out += fmt::format(
        "note: {} cell(s) hold the same value in another storage class, as the SQLite <-> "
        "PostgreSQL type mapping (or a spec's target column type) converts it (e.g. an integer "
        "in a bytea column); not differences\n",
        r.cells_converted);
  }
  const std::string skipped =
      r.ranges_skipped == 0
          ? ""
          : fmt::format("; {} range(s) not done yet were not compared", r.ranges_skipped);
  if (r.equal()) {
    out += fmt::format(
        "ferry verify: equal{}: {} rows in {} of {} ranges, {} and {} row for row, every range "
        "as copied{}\n",
        r.ranges_skipped == 0 ? "" : " so far", r.rows_checked, r.ranges_checked, r.ranges_total,
        r.source, r.target, skipped);
  } else {
    out += fmt::format(
        "ferry verify: DIFFERENT: {} difference(s) in {} of {} compared ranges ({} legacy "
        "rows){}\n",
        r.differences, r.ranges_differing, r.ranges_checked, r.rows_checked, skipped);
  }
  return out;
}

}  // namespace ferry
