// Worker::Verify: a verify lease (see worker/worker.h and worker/verifier.h).
// The lease is kept like a copy lease — heartbeats with the verification's
// cursor, the lease keeper's deadline, pause, drain, stop, lease lost — and
// every repair is written under the lease's fence.
#include <fmt/format.h>

#include <memory>
#include <random>
#include <set>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/key_codec.h"
#include "common/logging.h"
#include "worker/spec_row_source.h"
#include "worker/verifier.h"
#include "worker/worker.h"

namespace ferry {
namespace {

constexpr size_t kMaxListedKeys = 20;

uint64_t Seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

// The verify lease's fenced write path.
class FencedRepairer final : public Repairer {
 public:
  // `write`: what the copy writes (spec/target_plan.h); `table`: the new
  // store's table as it lists it (keys to delete are its keys).
  FencedRepairer(Store* target, const TableSchema* write, const TableSchema* table, Fence fence)
      : target_(target), write_(write), table_(table), fence_(std::move(fence)) {}
  Status Write(const RowBatch& rows) override { return target_->WriteBatch(*write_, rows, fence_); }
  Status Delete(const std::vector<std::string>& keys) override {
    return target_->DeleteRows(*table_, keys, fence_);
  }

 private:
  Store* target_;
  const TableSchema* write_;
  const TableSchema* table_;
  Fence fence_;
};

}  // namespace

Result<const TableSchema*> Worker::TargetSchema(const std::string& table) {
  auto it = target_schemas_.find(table);
  if (it == target_schemas_.end()) {
    FERRY_ASSIGN_OR_RETURN(std::vector<TableSchema> tables, target_->ListTables());
    for (TableSchema& t : tables) target_schemas_[t.name] = std::move(t);
    it = target_schemas_.find(table);
  }
  if (it == target_schemas_.end()) {
    return Permanent(
        fmt::format("the new store {} has no table {} to verify", target_->Describe(), table));
  }
  return &it->second;
}

Worker::Outcome Worker::Verify(Lease& lease) {
  auto copier_it = copiers_.find(lease.table);
  if (copier_it == copiers_.end()) {
    ReportError(lease, Permanent(fmt::format("table {} is not in the legacy store, nor a target "
                                             "of the migration spec",
                                             lease.table)));
    return Outcome::kGaveBack;
  }
  const TargetPlan& plan = copier_it->second->plan();
  auto target_schema = TargetSchema(plan.target.name);
  if (!target_schema.ok()) {
    ReportError(lease, target_schema.status());
    return Outcome::kGaveBack;
  }
  const KeyRange source_range{plan.source.name, lease.bounds.lo, lease.bounds.hi};
  const KeyRange target_range{(*target_schema)->name, lease.bounds.lo, lease.bounds.hi};
  RangeVerifier::Options vo;
  vo.chunk_rows =
      opt_.verify_chunk_rows ? opt_.verify_chunk_rows : std::max<size_t>(1000, batch_rows_);
  vo.max_keys = kMaxListedKeys;
  // Without a spec both sides are the table as it is (digests inside each
  // store). With one, the legacy rows as the spec makes them against the
  // written cells of the new rows (spec_row_source.h), compared by value:
  // the new store's columns convert what the spec gives them.
  std::unique_ptr<RowSource> legacy, target;
  std::unique_ptr<LuaTransform> lua;
  std::set<std::string> rejected;
  if (plan.identity() && spec_text_.empty()) {
    vo.cross_engine = plan.source.dialect != (*target_schema)->dialect;
    const DigestMode mode = vo.cross_engine ? DigestMode::kValues : DigestMode::kExact;
    legacy = std::make_unique<StoreRowSource>(source_.get(), &plan.source, source_range, mode);
    target = std::make_unique<StoreRowSource>(target_.get(), *target_schema, target_range, mode);
  } else {
    vo.cross_engine = true;
    const DigestMode mode = DigestMode::kValues;
    Status s;
    if (plan.has_lua()) {
      auto made = MakeTransform(plan);
      if (made.ok()) lua = std::move(made).value();
      s = made.status();
    }
    if (s.ok()) {
      // The rows the copy rejected are expected absent: never repaired in.
      auto listed = target_->ReadRejects(plan.entry.target, SIZE_MAX);
      if (listed.ok()) {
        for (Reject& r : *listed) rejected.insert(std::move(r.source_key));
      }
      s = listed.status();
    }
    Result<SpecTargetSource> spec_target =
        s.ok() ? SpecTargetSource::Create(&plan, target_.get(), *target_schema, target_range, mode)
               : Result<SpecTargetSource>(s);
    if (!spec_target.ok()) {
      ReportError(lease, spec_target.status());
      return Outcome::kGaveBack;
    }
    legacy = std::make_unique<SpecLegacySource>(&plan, source_.get(), lua.get(), &rejected,
                                                source_range, mode);
    target = std::make_unique<SpecTargetSource>(std::move(spec_target).value());
  }
  FencedRepairer repairer(target_.get(), &plan.write, *target_schema, FenceOf(lease));
  RangeVerifier verifier(legacy.get(), target.get(), &repairer, vo);

  Backoff backoff(opt_.backoff_base_ms, opt_.backoff_cap_ms, Seed());
  // Claim the range in the new store first: from here on no batch of an
  // earlier owner (an older epoch) lands in it.
  bool claimed = false;
  Throttle throttle;
  throttle.start_ms = clock_->NowMs();
  uint64_t chunks = 0, compared = 0;

  for (;;) {
    const Turn turn = AwaitTurn(lease, &throttle);
    if (turn == Turn::kLost) return Outcome::kLost;
    if (turn == Turn::kStopped) return Outcome::kStopped;
    if (turn == Turn::kWait) continue;
    Status s;
    ChunkResult chunk;
    if (!claimed) {
      s = target_->DeleteRows(**target_schema, {}, FenceOf(lease));  // records the fence only
      if (s.ok()) claimed = true;
    }
    if (s.ok()) s = verifier.VerifyChunk(lease.cursor, &chunk);
    if (s.code() == Code::kLeaseLost) {
      LogEvent(spdlog::level::warn, "fenced",
               {{"worker", opt_.id},
                {"range", lease.range},
                {"epoch", lease.epoch},
                {"why", s.message()}});
      return Outcome::kLost;
    }
    if (!s.ok()) {
      const bool transient = s.code() == Code::kUnavailable;
      if (transient && static_cast<uint32_t>(backoff.attempt()) < opt_.transient_retries) {
        LogEvent(RetryLevel(backoff.attempt() + 2), "verify_retry",
                 {{"worker", opt_.id},
                  {"range", lease.range},
                  {"epoch", lease.epoch},
                  {"attempt", backoff.attempt() + 1},
                  {"error", s.message()}});
        if (!KeepLeaseFor(lease, backoff.NextDelayMs())) return Outcome::kLost;
        continue;
      }
      ReportError(lease, s);
      return Outcome::kGaveBack;
    }
    backoff.Reset();
    ++chunks;
    compared += chunk.compared_rows;
    throttle.rows += chunk.legacy_rows;
    if (chunk.repaired > 0) {
      LogEvent(spdlog::level::warn, "repaired",
               {{"worker", opt_.id},
                {"range", lease.range},
                {"epoch", lease.epoch},
                {"rows", chunk.repaired},
                {"after", KeyToString(lease.cursor)}});
      lease.repaired += chunk.repaired;
      for (std::string& k : chunk.repaired_keys) {
        if (lease.repaired_keys.size() < kMaxListedKeys) {
          lease.repaired_keys.push_back(std::move(k));
        } else {
          lease.repaired_more++;
        }
      }
      lease.repaired_more += chunk.repaired - chunk.repaired_keys.size();
    }
    lease.cursor = chunk.last_key;
    if (chunk.end) {
      LogEvent(spdlog::level::debug, "verified",
               {{"worker", opt_.id},
                {"range", lease.range},
                {"chunks", chunks},
                {"rows_compared", compared},
                {"repaired", lease.repaired}});
      return FinishRange(lease, /*complete=*/true) ? Outcome::kDone : Outcome::kLost;
    }
  }
}

}  // namespace ferry
