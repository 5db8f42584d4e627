// TargetCopier: one batch of one target table (spec/target_plan.h), the step
// the worker's copy loop runs per batch. It owns the worker thread's Lua row
// function for the target (one LuaTransform per worker thread and target).
//
// ReadAndWrite: reads the rows of the range after the cursor through the
// target's projection (Store::ReadProjected: the legacy store evaluates
// select and where), runs the Lua function on each (if any), and writes the
// kept rows with Store::WriteBatch under the range's fence. A row the Lua
// function fails on is rejected. A write that fails on the data
// (kPermanent: a value the target refuses, a constraint) is retried on
// halves of the batch, recursively, each half its own fenced transaction,
// so that only the rows that fail alone are rejected and the rest land.
// Rejected rows are recorded in the new store's __ferry_rejects (one fenced
// transaction, idempotent: keyed on (table, source key)) before the batch
// counts as copied. Any other error (lease lost, unavailable) ends the batch
// with that error; nothing after the last committed cursor counts.
//
// A row whose target key would be NULL is rejected too (a NULL key is not
// idempotent: SQLite would give it a new rowid on every copy).
//
// CopyDirect: the target store copies the batch from the legacy store itself
// (Store::CopyProjected: SQLite to SQLite) when there is no Lua function, the
// target's key is the legacy key carried as it is, and the store can
// (CanCopyDirect). It rejects nothing: a batch it fails on is
// redone by ReadAndWrite (the worker turns direct copy off, see worker.h).
//
// Read-ahead (set_read_ahead): once ReadAndWrite has read (and
// transformed) a batch, it starts reading and transforming the next one —
// after that batch's last key, in the same bounds, with the same limits — on
// a helper thread (a JobThread the worker thread shares among its copiers:
// it copies one lease at a time), and writes while that runs: the read and
// the Lua function of batch n + 1 overlap the write and commit of batch n.
// The next ReadAndWrite takes that batch when it asks for exactly it: the
// same bounds, the same cursor, and a row limit at least 4/5 of the one it
// was read with (a batch sizer that shrank the batch a little still gets it;
// a throttle that cut it to a tenth does not). Anything else drops it and
// reads anew. With two batches in memory, each reads at most half of
// max_bytes (wide rows: the same row bytes in memory as one batch without
// read-ahead). Only reads run ahead: every write, reject record and fence
// check stays on the calling thread, in cursor order, and the digest is
// folded there in the same order; a read-ahead batch is never written unless
// a later ReadAndWrite asks for it, so a lost lease, an error or a retry
// that re-reads from the last committed cursor never sees stale rows.
// (Online migrations: a row read early is like a row read slowly: its change
// record follows it, see worker/change_applier.h.)
//
// Both return in *out: rows written, rows rejected, rows dropped (by the Lua
// function), bytes and the last key READ (the cursor: it moves past dropped
// and rejected rows too; empty when the range has no rows left), and the
// range digest folded over the rows read (source key + projected cells, as
// common/digest.h folds them), starting from out->digest.
//
// Thread safety: confined to one worker thread, like the stores it uses —
// except that while a read-ahead runs, the source store and the Lua function
// belong to its helper thread. The owner calls Settle() (which waits for it
// and drops it) before it uses the source store itself, and at the end of a
// lease; every other member waits for it first itself.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/value.h"
#include "spec/lua_transform.h"
#include "spec/target_plan.h"
#include "stores/store.h"
#include "worker/job_thread.h"

namespace ferry {

struct TargetBatch {
  CopiedBatch copied;     // rows = written; digest in/out; last_key = last read
  uint64_t rejected = 0;  // recorded in __ferry_rejects
  uint64_t dropped = 0;   // the Lua function returned nil
};

class TargetCopier {
 public:
  // `plan`, `source` and `target` must outlive the copier. Creates the Lua
  // function for a plan that has one (kInvalidArgument if it cannot).
  // `isolate_rejects`: a job with a migration spec; without one a row the
  // new store refuses fails its batch (and, repeated, its range) as before
  // specs, and nothing is rejected.
  static Result<std::unique_ptr<TargetCopier>> Create(const TargetPlan* plan, Store* source,
                                                      Store* target, bool isolate_rejects);

  ~TargetCopier() { Settle(); }
  TargetCopier(const TargetCopier&) = delete;
  TargetCopier& operator=(const TargetCopier&) = delete;

  const TargetPlan& plan() const { return *plan_; }
  // Read the next batch ahead on `helper` while writing (see above); null
  // (the default) = off. `helper` must outlive the copier.
  void set_read_ahead(JobThread* helper) { helper_ = helper; }
  // Waits for a read-ahead that runs and drops it: afterwards the source
  // store is the caller's again.
  void Settle();
  // Settle, and free the batch buffers: a copier between leases holds no
  // rows (a worker has a copier per target, and copies one lease at a time).
  void Idle();
  // True if the target store can copy this target's batches itself.
  bool CanCopyDirect();
  Status CopyDirect(const KeyRange& range, std::string_view after, size_t max_rows,
                    size_t max_bytes, const Fence& fence, TargetBatch* out);
  Status ReadAndWrite(const KeyRange& range, std::string_view after, size_t max_rows,
                      size_t max_bytes, const Fence& fence, TargetBatch* out);

 private:
  TargetCopier(const TargetPlan* plan, Store* source, Store* target, bool isolate_rejects)
      : plan_(plan), source_(source), target_(target), isolate_rejects_(isolate_rejects) {}
  // A batch read (and transformed), with what it was read for.
  struct Prepared {
    KeyRange range;  // in the source table's key space
    std::string after;
    size_t max_rows = 0, max_bytes = 0;
    Status status;
    RowBatch read, kept;  // kept: the Lua function's rows
    std::vector<Reject> rejects;
    uint64_t dropped = 0;
  };
  // Reads the batch after p->after and runs the Lua function on it.
  void Prepare(Prepared* p);
  // Takes the read-ahead batch into cur_ if it is the one asked for.
  bool TakeReadAhead(const KeyRange& range, std::string_view after, size_t max_rows,
                     size_t max_bytes);
  // True if every key column of what a batch writes carries a source key
  // column as it is (so it is never NULL).
  bool KeyCarried() const;
  // Moves the rows of *rows whose target key has a NULL into *rejects (a
  // NULL key would not be idempotent: SQLite would give it a new rowid).
  void RejectNullKeys(RowBatch* rows, std::vector<Reject>* rejects) const;
  // Writes `rows` [begin, end) of `batch`, isolating the rows the target
  // refuses into *rejects.
  Status WriteIsolating(const RowBatch& batch, size_t begin, size_t end, const Fence& fence,
                        std::vector<Reject>* rejects, uint64_t* written);

  const TargetPlan* plan_;
  Store* source_;
  Store* target_;
  bool isolate_rejects_;
  JobThread* helper_ = nullptr;
  bool ahead_ = false;  // next_ is (being) read ahead, and belongs to helper_ until waited for
  std::unique_ptr<LuaTransform> lua_;
  std::string digest_scratch_;
  // The batch being written, and the one read ahead (buffers reused).
  std::unique_ptr<Prepared> cur_ = std::make_unique<Prepared>();
  std::unique_ptr<Prepared> next_ = std::make_unique<Prepared>();
};

}  // namespace ferry
