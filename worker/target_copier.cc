#include "worker/target_copier.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/digest.h"
#include "common/key_codec.h"
#include "stores/table_checks.h"

namespace ferry {

Result<std::unique_ptr<TargetCopier>> TargetCopier::Create(const TargetPlan* plan, Store* source,
                                                           Store* target, bool isolate_rejects) {
  std::unique_ptr<TargetCopier> c(new TargetCopier(plan, source, target, isolate_rejects));
  if (plan->has_lua()) {
    FERRY_ASSIGN_OR_RETURN(c->lua_, MakeTransform(*plan));
  }
  return c;
}

bool TargetCopier::CanCopyDirect() {
  if (plan_->has_lua()) return false;
  if (!plan_->identity() && !KeyCarried()) return false;  // rows need the NULL-key check
  return target_->CanCopyProjected(*source_, plan_->source, plan_->projection, plan_->write);
}

bool TargetCopier::KeyCarried() const {
  std::vector<int> source_key;
  if (plan_->source.rowid_key()) {
    source_key.push_back(0);
  } else {
    for (size_t k : plan_->source.key_columns) source_key.push_back(static_cast<int>(k));
  }
  if (plan_->write.rowid_key()) return plan_->projected.size() == plan_->write.width();
  for (size_t k : plan_->write.key_columns) {
    if (k >= plan_->projected.size()) return false;
    const int cell = plan_->projected[k].source_cell;
    if (std::find(source_key.begin(), source_key.end(), cell) == source_key.end()) return false;
  }
  return true;
}

void TargetCopier::RejectNullKeys(RowBatch* rows, std::vector<Reject>* rejects) const {
  if (plan_->identity() || (!plan_->has_lua() && KeyCarried())) return;
  std::vector<size_t> key_cells = plan_->write.key_columns;
  if (plan_->write.rowid_key()) key_cells = {0};
  const size_t width = rows->width;
  size_t n = 0;
  for (size_t r = 0; r < rows->rows(); ++r) {
    const Value* row = rows->row(r);
    const size_t null_at =
        std::find_if(key_cells.begin(), key_cells.end(),
                     [&](size_t c) { return std::holds_alternative<Null>(row[c]); }) -
        key_cells.begin();
    if (null_at < key_cells.size()) {
      const std::vector<std::string> names =
          CellNames(plan_->write, RowidAlias(plan_->write.columns));
      rejects->push_back(Reject{
          plan_->entry.target, KeyToFullString(rows->keys[r]),
          fmt::format("the target's key column {} is NULL (a key must come from the legacy row)",
                      names[key_cells[null_at]])});
      continue;
    }
    if (n != r) {
      rows->keys[n] = std::move(rows->keys[r]);
      for (size_t c = 0; c < width; ++c)
        rows->cells[n * width + c] = std::move(rows->cells[r * width + c]);
    }
    ++n;
  }
  rows->keys.resize(n);
  rows->cells.resize(n * width);
}

void TargetCopier::Settle() {
  if (!ahead_) return;
  helper_->Wait();
  ahead_ = false;
}

void TargetCopier::Idle() {
  Settle();
  cur_ = std::make_unique<Prepared>();
  next_ = std::make_unique<Prepared>();
}

Status TargetCopier::CopyDirect(const KeyRange& range, std::string_view after, size_t max_rows,
                                size_t max_bytes, const Fence& fence, TargetBatch* out) {
  Settle();
  const KeyRange source_range{plan_->source.name, range.lo, range.hi};
  return target_->CopyProjected(*source_, plan_->source, plan_->projection, plan_->write,
                                source_range, after, max_rows, max_bytes, fence, &out->copied);
}

void TargetCopier::Prepare(Prepared* p) {
  p->rejects.clear();
  p->dropped = 0;  // (p->kept keeps its cells: TransformBatch reuses their buffers)
  p->status = source_->ReadProjected(plan_->source, plan_->projection, p->range, p->after,
                                     p->max_rows, p->max_bytes, &p->read);
  if (p->status.ok() && lua_ && p->read.rows() > 0) {
    p->dropped = TransformBatch(*plan_, lua_.get(), p->read, &p->kept, &p->rejects);
  }
}

bool TargetCopier::TakeReadAhead(const KeyRange& range, std::string_view after, size_t max_rows,
                                 size_t max_bytes) {
  if (!ahead_) return false;
  Settle();
  const Prepared& n = *next_;
  const bool wanted = n.range.lo == range.lo && n.range.hi == range.hi && n.after == after &&
                      n.max_bytes <= max_bytes && n.max_rows <= max_rows + max_rows / 4;
  if (wanted) std::swap(cur_, next_);
  return wanted;
}

Status TargetCopier::ReadAndWrite(const KeyRange& range, std::string_view after, size_t max_rows,
                                  size_t max_bytes, const Fence& fence, TargetBatch* out) {
  // Two batches are in memory at once with read-ahead: each gets half the
  // byte budget (the row limit binds first unless rows are wide).
  if (helper_) max_bytes = std::max<size_t>(1, max_bytes / 2);
  const KeyRange source_range{plan_->source.name, range.lo, range.hi};
  if (!TakeReadAhead(source_range, after, max_rows, max_bytes)) {
    cur_->range = source_range;
    cur_->after.assign(after);
    cur_->max_rows = max_rows;
    cur_->max_bytes = max_bytes;
    Prepare(cur_.get());
  }
  Prepared& p = *cur_;
  FERRY_RETURN_IF_ERROR(p.status);
  CopiedBatch& c = out->copied;
  c.rows = 0;
  if (p.read.rows() == 0) {
    // Nothing left: record our epoch on the range's fence anyway (an empty,
    // fenced transaction), so a stalled older owner can never write into the
    // range after we report it done.
    RowBatch none;
    none.width = plan_->write.width();
    return target_->WriteBatch(plan_->write, none, fence);
  }
  if (helper_) {
    Prepared& n = *next_;
    n.range = source_range;
    n.after = p.read.keys.back();
    n.max_rows = max_rows;
    n.max_bytes = max_bytes;
    // (Without a thread to spare, the next batch is read when asked for.)
    ahead_ = helper_->Start([this] { Prepare(next_.get()); });
  }
  std::vector<Reject>& rejects = p.rejects;
  RowBatch* rows = &p.read;
  if (lua_) {
    out->dropped = p.dropped;
    rows = &p.kept;
  }
  uint64_t read_bytes = p.read.bytes;
  std::string last_key = p.read.keys.back();
  uint64_t digest = FoldDigest(c.digest, p.read, &digest_scratch_);
  RejectNullKeys(rows, &rejects);  // (may compact p.read itself: digest and cursor first)
  uint64_t written = 0;
  if (rows->rows() > 0) {
    Status s = target_->WriteBatch(plan_->write, *rows, fence);
    if (s.ok()) {
      written = rows->rows();
    } else if (!isolate_rejects_) {
      return s;
    } else if (s.code() == Code::kPermanent && rows->rows() == 1) {
      rejects.push_back(
          Reject{plan_->entry.target, KeyToFullString(rows->keys[0]), RejectReason(s.message())});
    } else if (s.code() == Code::kPermanent) {
      FERRY_RETURN_IF_ERROR(WriteIsolating(*rows, 0, rows->rows(), fence, &rejects, &written));
    } else {
      return s;
    }
  }
  if (!rejects.empty()) FERRY_RETURN_IF_ERROR(target_->WriteRejects(rejects, fence));
  c.rows = written;
  out->rejected = rejects.size();
  c.bytes = read_bytes;
  c.last_key = std::move(last_key);
  c.digest = digest;
  return Status::Ok();
}

Status TargetCopier::WriteIsolating(const RowBatch& batch, size_t begin, size_t end,
                                    const Fence& fence, std::vector<Reject>* rejects,
                                    uint64_t* written) {
  // The caller saw [begin, end) (two rows or more) fail on its data as a
  // whole: try each half.
  const size_t mid = begin + (end - begin) / 2;
  for (const auto& [lo, hi] : {std::pair<size_t, size_t>{begin, mid}, {mid, end}}) {
    const size_t width = batch.width;
    RowBatch part;
    part.width = width;
    part.keys.assign(batch.keys.begin() + lo, batch.keys.begin() + hi);
    part.cells.assign(batch.cells.begin() + lo * width, batch.cells.begin() + hi * width);
    Status s = target_->WriteBatch(plan_->write, part, fence);
    if (s.ok()) {
      *written += hi - lo;
      continue;
    }
    if (s.code() != Code::kPermanent) return s;
    if (hi - lo == 1) {
      rejects->push_back(
          Reject{plan_->entry.target, KeyToFullString(batch.keys[lo]), RejectReason(s.message())});
      continue;
    }
    FERRY_RETURN_IF_ERROR(WriteIsolating(batch, lo, hi, fence, rejects, written));
  }
  return Status::Ok();
}

}  // namespace ferry
