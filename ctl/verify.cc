#include "ctl/verify.h"

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>

#include "common/digest.h"
#include "common/file_checks.h"
#include "common/key_codec.h"
#include "coordinator/state_store.h"
#include "stores/store.h"

namespace ferry {
namespace {

constexpr size_t kMaxBytes = 16u << 20;  // per batch and store

struct PlannedRange {
  uint64_t id = 0;
  KeyRange range;
  RangeState state = RangeState::kPending;
  uint64_t rows = 0;
  uint64_t digest = 0;
};

struct Job {
  std::string source_uri;
  std::string target_uri;
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
  for (RangeRecord& rr : ranges) {
    PlannedRange r;
    r.id = rr.id;
    r.range = KeyRange{std::move(rr.table), std::move(rr.lo), std::move(rr.hi)};
    r.state = rr.state;
    r.rows = rr.rows;
    r.digest = rr.digest;
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
    for (auto& x : s) source_tables_[x.name] = std::move(x);
    for (auto& x : t) target_tables_[x.name] = std::move(x);
    return Status::Ok();
  }

  Status Check(const PlannedRange& r) {
    const std::string where = fmt::format("range {} (table {}, keys {} .. {})", r.id, r.range.table,
                                          r.range.lo.empty() ? "start" : KeyToString(r.range.lo),
                                          r.range.hi.empty() ? "end" : KeyToString(r.range.hi));
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
  if (r.cells_converted > 0) {
    out += fmt::format(
        "note: {} cell(s) hold the same value in another storage class, as the SQLite <-> "
        "PostgreSQL type mapping converts it (e.g. an integer in a bytea column); not "
        "differences\n",
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
