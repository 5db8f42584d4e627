#include "worker/worker.h"

#include <capnp/message.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <thread>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/key_codec.h"
#include "common/logging.h"
#include "common/version.h"

namespace ferry {
namespace {

uint64_t Seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd() ^ static_cast<uint64_t>(getpid());
}

}  // namespace

std::string DefaultWorkerId() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::mt19937 rng(static_cast<uint32_t>(Seed()));
  return fmt::format("{}-{}-{:04x}", host, getpid(), rng() & 0xffff);
}

Worker::Worker(WorkerOptions options, zmq::context_t* ctx, const std::atomic<bool>* stop)
    : opt_(std::move(options)), ctx_(ctx), stop_(stop), client_(ctx, opt_.coordinator, opt_.curve) {
  if (opt_.id.empty()) opt_.id = DefaultWorkerId();
}

bool Worker::Sleep(int64_t ms) {
  int64_t until = MonotonicMs() + ms;
  while (MonotonicMs() < until) {
    if (Stopping()) return false;
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::min<int64_t>(50, until - MonotonicMs())));
  }
  return !Stopping();
}

Status Worker::Register() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  capnp::MallocMessageBuilder b;
  uint64_t rid = client_.NextRequestId();
  auto reg = NewEnvelope(b, rid).getBody().initRegister();
  reg.setWorkerId(opt_.id);
  reg.setHost(host);
  reg.setPid(static_cast<uint32_t>(getpid()));
  reg.setVersion(kFerryVersion);
  auto reply = client_.Call(b, rid, opt_.request_timeout_ms);
  if (!reply) return Unavailable(fmt::format("no answer from coordinator {}", opt_.coordinator));
  auto body = reply->root().getBody();
  if (body.isError()) {
    auto e = body.getError();
    std::string msg(AsView(e.getMessage()));
    if (e.getCode() == Error::Code::VERSION_MISMATCH) return FailedPrecondition(msg);
    return Unavailable(msg);
  }
  if (!body.isRegistered()) return Unavailable("unexpected answer to register");
  auto r = body.getRegistered();
  plan_id_ = AsView(r.getPlanId());
  source_uri_ = opt_.source_uri.empty() ? std::string(AsView(r.getSourceUri())) : opt_.source_uri;
  target_uri_ = opt_.target_uri.empty() ? std::string(AsView(r.getTargetUri())) : opt_.target_uri;
  batch_rows_ = opt_.batch_rows ? opt_.batch_rows : std::max<uint32_t>(1, r.getBatchRows());
  ttl_ms_ = std::max<uint32_t>(100, r.getLeaseTtlMs());
  heartbeat_ms_ = std::max<uint32_t>(10, r.getHeartbeatMs());
  to_version_ = r.getToVersion();
  LogEvent(spdlog::level::info, "registered",
           {{"worker", opt_.id},
            {"coordinator", opt_.coordinator},
            {"plan", plan_id_},
            {"batch_rows", batch_rows_},
            {"lease_ttl_ms", ttl_ms_}});
  return Status::Ok();
}

Status Worker::OpenStores() {
  if (!source_) {
    FERRY_ASSIGN_OR_RETURN(source_, OpenStore(source_uri_, StoreRole::kSource));
  }
  if (!target_) {
    FERRY_ASSIGN_OR_RETURN(target_, OpenStore(target_uri_, StoreRole::kTarget));
  }
  if (schemas_.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::vector<TableSchema> tables, source_->ListTables());
    for (TableSchema& t : tables) schemas_[t.name] = std::move(t);
  }
  return Status::Ok();
}

Status Worker::CheckTargetPlan() {
  FERRY_ASSIGN_OR_RETURN(bool ours, target_->HasPlan(plan_id_));
  if (ours) return Status::Ok();
  return InvalidArgument(fmt::format(
      "the new store {} is not the one coordinator {} migrates into: it holds no record of plan "
      "{}; nothing was written to it (check this worker's --target, or that the coordinator's "
      "--target names the same store from this host)",
      target_->Describe(), opt_.coordinator, plan_id_));
}

Status Worker::Run() {
  Backoff backoff(opt_.backoff_base_ms, opt_.backoff_cap_ms, Seed());
  bool registered = false;
  while (!Stopping()) {
    if (!registered) {
      Status s = Register();
      if (s.code() == Code::kFailedPrecondition) return s;
      if (!s.ok()) {
        LogEvent(
            RetryLevel(backoff.attempt()), "register_retry",
            {{"worker", opt_.id},
             {"attempt", backoff.attempt() + 1},
             {"error", s.message()},
             {"check", opt_.curve.server_key.empty()
                           ? "is the coordinator running and --coordinator right?"
                           : "is the coordinator running, --coordinator right, "
                             "--curve-server-key-file its public key, and this worker's public "
                             "key " +
                                 opt_.curve.public_key + " in its --curve-allow-file?"}});
        if (backoff.attempt() > 0 && backoff.attempt() % 5 == 0) client_.Reconnect();
        Sleep(backoff.NextDelayMs());
        continue;
      }
      registered = true;
      backoff.Reset();
      Status o = OpenStores();
      if (o.ok()) o = CheckTargetPlan();
      if (!o.ok()) {
        if (o.code() == Code::kInvalidArgument || o.code() == Code::kPermanent) {
          ReportRefusal(o);
          return o;
        }
        LogEvent(RetryLevel(backoff.attempt()), "open_stores_retry",
                 {{"worker", opt_.id}, {"error", o.message()}});
        registered = false;
        Sleep(backoff.NextDelayMs());
        continue;
      }
    }
    // The answer to the last completion may already be the next lease.
    int64_t sent = next_lease_sent_;
    std::unique_ptr<DecodedEnvelope> reply = std::move(next_lease_);
    if (!reply) {
      capnp::MallocMessageBuilder b;
      uint64_t rid = client_.NextRequestId();
      NewEnvelope(b, rid).getBody().initLeaseRequest().setWorkerId(opt_.id);
      sent = MonotonicMs();
      reply = client_.Call(b, rid, opt_.request_timeout_ms,
                           [this](DecodedEnvelope& e) { ReleaseStale(e); });
    }
    if (!reply) {
      auto level = backoff.attempt() >= 10 ? spdlog::level::err : RetryLevel(backoff.attempt());
      LogEvent(level, "coordinator_unreachable",
               {{"worker", opt_.id},
                {"coordinator", opt_.coordinator},
                {"attempt", backoff.attempt() + 1},
                {"check", "is the coordinator running and reachable from this host?"}});
      // The coordinator may have finished and gone (or be down): the new
      // store's own version marker says whether the migration is complete.
      if (TargetMarkedDone()) return CompleteByMarker();
      if (backoff.attempt() > 0 && backoff.attempt() % 5 == 0) client_.Reconnect();
      Sleep(backoff.NextDelayMs());
      continue;
    }
    backoff.Reset();
    auto body = reply->root().getBody();
    switch (body.which()) {
      case Envelope::Body::GRANT: {
        Lease lease = LeaseFromGrant(*reply, sent);
        paused_ = false;
        rate_limit_ = body.getGrant().getRowsPerSecond();
        LogEvent(spdlog::level::debug, "lease",
                 {{"worker", opt_.id},
                  {"range", lease.range},
                  {"epoch", lease.epoch},
                  {"table", lease.table},
                  {"cursor", KeyToString(lease.cursor)}});
        Outcome out = Copy(lease);
        if (out == Outcome::kStopped) return Status::Ok();
        if (marked_done_) return CompleteByMarker();
        if (out == Outcome::kGaveBack) Sleep(backoff.NextDelayMs());
        break;
      }
      case Envelope::Body::NO_WORK: {
        auto n = body.getNoWork();
        if (n.getComplete()) {
          LogEvent(spdlog::level::info, "migration_complete",
                   {{"worker", opt_.id}, {"rows_written", rows_written_}});
          return Status::Ok();
        }
        if (n.getFailed()) {
          return Permanent("the migration failed; see 'ferryctl status' on the coordinator");
        }
        if (n.getDraining()) {
          LogEvent(spdlog::level::info, "drained", {{"worker", opt_.id}});
          return Status::Ok();
        }
        Sleep(std::clamp<int64_t>(n.getRetryAfterMs(), 10, 5000));
        break;
      }
      case Envelope::Body::ERROR: {
        auto e = body.getError();
        std::string msg(AsView(e.getMessage()));
        if (e.getCode() == Error::Code::VERSION_MISMATCH) return FailedPrecondition(msg);
        if (e.getCode() == Error::Code::UNKNOWN_WORKER) {
          registered = false;
          break;
        }
        LogEvent(spdlog::level::warn, "coordinator_error", {{"worker", opt_.id}, {"error", msg}});
        Sleep(backoff.NextDelayMs());
        break;
      }
      default:
        Sleep(backoff.NextDelayMs());
        break;
    }
  }
  // Stopped with a lease granted in answer to our last completion: give it back.
  if (next_lease_ && next_lease_->root().getBody().isGrant()) {
    Lease lease = LeaseFromGrant(*next_lease_, next_lease_sent_);
    FinishRange(lease, /*complete=*/false);
  }
  return Status::Ok();
}

Worker::Lease Worker::LeaseFromGrant(DecodedEnvelope& reply, int64_t sent) {
  auto g = reply.root().getBody().getGrant();
  Lease lease;
  lease.range = g.getRangeId();
  lease.epoch = g.getEpoch();
  lease.table = AsView(g.getTable());
  lease.bounds =
      KeyRange{lease.table, std::string(AsView(g.getLo())), std::string(AsView(g.getHi()))};
  lease.cursor = AsView(g.getCursor());
  lease.rows = g.getRowsDone();
  lease.bytes = g.getBytesDone();
  lease.digest = g.getDigest();
  ttl_ms_ = std::max<uint32_t>(100, g.getLeaseTtlMs());
  lease.deadline_mono = sent + ttl_ms_;
  return lease;
}

bool Worker::TargetMarkedDone() {
  if (!target_ || to_version_ <= 0) return false;
  auto v = target_->ReadVersion();
  return v.ok() && v->has_value() && **v == to_version_;
}

Status Worker::CompleteByMarker() {
  LogEvent(spdlog::level::info, "migration_complete",
           {{"worker", opt_.id},
            {"rows_written", rows_written_},
            {"source", "the new store's version marker"}});
  return Status::Ok();
}

void Worker::SendHeartbeat(const Lease& lease) {
  // Only a durable cursor is reported. Without one, no heartbeat: the lease
  // runs out and the range resumes from the last cursor that was reported.
  Status synced = target_->SyncWrites();
  if (!synced.ok()) {
    LogEvent(spdlog::level::warn, "sync_failed",
             {{"worker", opt_.id}, {"range", lease.range}, {"error", synced.message()}});
    return;
  }
  capnp::MallocMessageBuilder b;
  uint64_t rid = client_.NextRequestId();
  auto hb = NewEnvelope(b, rid).getBody().initHeartbeat();
  hb.setWorkerId(opt_.id);
  hb.setRangeId(lease.range);
  hb.setEpoch(lease.epoch);
  hb.setCursor(AsData(lease.cursor));
  hb.setRowsDone(lease.rows);
  hb.setBytesDone(lease.bytes);
  hb.setDigest(lease.digest);
  heartbeat_sent_[rid] = MonotonicMs();
  if (heartbeat_sent_.size() > 1024) heartbeat_sent_.erase(heartbeat_sent_.begin());
  client_.SendAsync(b);
}

bool Worker::DrainReplies(Lease& lease, int timeout_ms) {
  int wait = timeout_ms;
  while (auto env = client_.Poll(wait)) {
    wait = 0;
    try {
      auto root = env->root();
      auto body = root.getBody();
      if (body.isAck()) {
        auto a = body.getAck();
        if (a.getRangeId() != lease.range || a.getEpoch() != lease.epoch) continue;
        auto it = heartbeat_sent_.find(root.getRequestId());
        if (it != heartbeat_sent_.end()) {
          int64_t ttl = a.getLeaseTtlMs() ? a.getLeaseTtlMs() : ttl_ms_;
          lease.deadline_mono = std::max(lease.deadline_mono, it->second + ttl);
          heartbeat_sent_.erase(heartbeat_sent_.begin(), std::next(it));
        }
        paused_ = a.getPaused();
        drain_ = a.getDrain();
        rate_limit_ = a.getRowsPerSecond();
      } else if (body.isError()) {
        auto e = body.getError();
        if (e.getCode() == Error::Code::LEASE_LOST && e.getRangeId() == lease.range &&
            e.getEpoch() == lease.epoch) {
          LogEvent(spdlog::level::warn, "lease_lost",
                   {{"worker", opt_.id},
                    {"range", lease.range},
                    {"epoch", lease.epoch},
                    {"why", std::string(AsView(e.getMessage()))}});
          return false;
        }
      } else if (body.isGrant()) {
        ReleaseStale(*env);
      }
    } catch (const kj::Exception&) {
      // a malformed reply is ignored
    }
  }
  return true;
}

void Worker::ReleaseStale(DecodedEnvelope& env) {
  auto body = env.root().getBody();
  if (!body.isGrant()) return;
  auto g = body.getGrant();
  // A grant for a request we gave up on: hand it straight back.
  capnp::MallocMessageBuilder b;
  auto rel = NewEnvelope(b, client_.NextRequestId()).getBody().initRelease();
  rel.setWorkerId(opt_.id);
  rel.setRangeId(g.getRangeId());
  rel.setEpoch(g.getEpoch());
  rel.setCursor(g.getCursor());
  rel.setRowsDone(g.getRowsDone());
  rel.setBytesDone(g.getBytesDone());
  rel.setDigest(g.getDigest());
  client_.SendAsync(b);
}

bool Worker::FinishRange(Lease& lease, bool complete) {
  Status synced = target_->SyncWrites();  // the cursor reported must be durable
  if (!synced.ok()) {
    ReportError(lease, synced);
    return false;
  }
  Backoff backoff(opt_.backoff_base_ms, opt_.backoff_cap_ms, Seed());
  const int64_t give_up = MonotonicMs() + (complete ? 3 * ttl_ms_ : 2000);
  while (MonotonicMs() < give_up) {
    capnp::MallocMessageBuilder b;
    uint64_t rid = client_.NextRequestId();
    auto body = NewEnvelope(b, rid).getBody();
    if (complete) {
      auto c = body.initComplete();
      c.setWorkerId(opt_.id);
      c.setRangeId(lease.range);
      c.setEpoch(lease.epoch);
      c.setRows(lease.rows);
      c.setBytes(lease.bytes);
      c.setDigest(lease.digest);
      c.setCursor(AsData(lease.cursor));
      c.setNext(!Stopping() && !drain_);
    } else {
      auto r = body.initRelease();
      r.setWorkerId(opt_.id);
      r.setRangeId(lease.range);
      r.setEpoch(lease.epoch);
      r.setCursor(AsData(lease.cursor));
      r.setRowsDone(lease.rows);
      r.setBytesDone(lease.bytes);
      r.setDigest(lease.digest);
      r.setLeaving(true);
    }
    const int64_t sent = MonotonicMs();
    auto reply = client_.Call(b, rid, opt_.request_timeout_ms,
                              [this](DecodedEnvelope& e) { ReleaseStale(e); });
    if (reply) {
      auto rb = reply->root().getBody();
      const bool next = complete && (rb.isGrant() || rb.isNoWork());
      if (rb.isAck() || next) {
        LogEvent(spdlog::level::info, complete ? "range_done" : "range_released",
                 {{"worker", opt_.id},
                  {"range", lease.range},
                  {"epoch", lease.epoch},
                  {"rows", lease.rows},
                  {"bytes", lease.bytes},
                  {"cursor", KeyToString(lease.cursor)}});
        if (next) {
          next_lease_ = std::move(reply);
          next_lease_sent_ = sent;
        }
        return true;
      }
      if (rb.isError()) {
        LogEvent(spdlog::level::warn, "lease_lost",
                 {{"worker", opt_.id},
                  {"range", lease.range},
                  {"epoch", lease.epoch},
                  {"why", std::string(AsView(rb.getError().getMessage()))}});
        return false;
      }
    } else if (complete && TargetMarkedDone()) {
      // No answer, but the new store is at the target version: every range,
      // this one too, is done and the coordinator has finished (and may have
      // exited; libzmq can drop a reply sent just before its socket closes).
      // Nothing is left to report.
      marked_done_ = true;
      return true;
    }
    LogEvent(RetryLevel(backoff.attempt()), complete ? "complete_retry" : "release_retry",
             {{"worker", opt_.id}, {"range", lease.range}, {"attempt", backoff.attempt() + 1}});
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff.NextDelayMs()));
  }
  return false;
}

void Worker::ReportError(const Lease& lease, const Status& s) {
  bool permanent = s.code() == Code::kPermanent || s.code() == Code::kInvalidArgument ||
                   s.code() == Code::kInternal;
  LogEvent(spdlog::level::err, "range_error",
           {{"worker", opt_.id},
            {"range", lease.range},
            {"epoch", lease.epoch},
            {"permanent", permanent},
            {"error", s.message()}});
  SendReportError(lease.range, lease.epoch, permanent, s.message());
}

void Worker::SendReportError(uint64_t range, uint64_t epoch, bool permanent,
                             const std::string& message) {
  capnp::MallocMessageBuilder b;
  uint64_t rid = client_.NextRequestId();
  auto r = NewEnvelope(b, rid).getBody().initReportError();
  r.setWorkerId(opt_.id);
  r.setRangeId(range);
  r.setEpoch(epoch);
  r.setPermanent(permanent);
  r.setMessage(message.substr(0, 1000));
  client_.Call(b, rid, opt_.request_timeout_ms, [this](DecodedEnvelope& e) { ReleaseStale(e); });
}

void Worker::ReportRefusal(const Status& s) {
  // Best effort: the worker exits either way.
  SendReportError(/*range=*/0, /*epoch=*/0, /*permanent=*/true, s.message());
}

Worker::Outcome Worker::Copy(Lease& lease) {
  auto schema_it = schemas_.find(lease.table);
  if (schema_it == schemas_.end()) {
    ReportError(lease, Permanent(fmt::format("table {} is not in the legacy store", lease.table)));
    return Outcome::kGaveBack;
  }
  const TableSchema& schema = schema_it->second;
  const Fence fence{plan_id_, lease.range, lease.epoch};
  const int64_t safety = std::max<int64_t>(ttl_ms_ / 5, 50);
  Backoff backoff(opt_.backoff_base_ms, opt_.backoff_cap_ms, Seed());
  bool direct = opt_.direct_copy && target_->CanCopyFrom(*source_, schema);
  int64_t last_hb = MonotonicMs();
  int64_t throttle_start = MonotonicMs();
  uint64_t throttle_rows = 0;
  uint64_t throttle_limit = 0;

  for (;;) {
    if (!DrainReplies(lease, 0)) return Outcome::kLost;
    if (Stopping() || drain_) {
      FinishRange(lease, /*complete=*/false);
      return Outcome::kStopped;
    }
    int64_t now = MonotonicMs();
    if (now - last_hb >= heartbeat_ms_) {
      SendHeartbeat(lease);
      last_hb = now;
    }
    if (now + safety >= lease.deadline_mono) {
      // Our lease may be about to expire: no write until the coordinator confirms it.
      if (!DrainReplies(lease, 50)) return Outcome::kLost;
      if (MonotonicMs() >= lease.deadline_mono) {
        LogEvent(spdlog::level::warn, "lease_expired",
                 {{"worker", opt_.id},
                  {"range", lease.range},
                  {"epoch", lease.epoch},
                  {"check", "no answer from the coordinator within the lease TTL"}});
        return Outcome::kLost;
      }
      continue;
    }
    if (paused_) {
      if (!DrainReplies(lease, 50)) return Outcome::kLost;
      continue;
    }
    if (rate_limit_ != throttle_limit) {
      throttle_limit = rate_limit_;
      throttle_start = now;
      throttle_rows = 0;
    }
    if (throttle_limit > 0) {
      int64_t due = throttle_start + static_cast<int64_t>(throttle_rows * 1000 / throttle_limit);
      if (due > now) {
        if (!DrainReplies(lease, static_cast<int>(std::min<int64_t>(due - now, 50)))) {
          return Outcome::kLost;
        }
        continue;
      }
    }
    size_t want = batch_rows_;
    if (throttle_limit > 0) want = std::clamp<size_t>(throttle_limit / 10, 1, batch_rows_);
    CopiedBatch copied;
    copied.digest = lease.digest;
    Status s = direct ? target_->CopyBatch(*source_, schema, lease.bounds, lease.cursor, want,
                                           opt_.batch_bytes, fence, &copied)
                      : ReadAndWrite(schema, lease, want, fence, &copied);
    if (direct && !s.ok() && s.code() != Code::kLeaseLost && s.code() != Code::kUnavailable) {
      LogEvent(spdlog::level::warn, "direct_copy_off",
               {{"worker", opt_.id},
                {"range", lease.range},
                {"error", s.message()},
                {"next", "copying through read + write"}});
      direct = false;
      continue;
    }
    if (s.ok() && copied.rows == 0) {
      return FinishRange(lease, /*complete=*/true) ? Outcome::kDone : Outcome::kLost;
    }
    if (s.code() == Code::kLeaseLost) {
      LogEvent(spdlog::level::warn, "fenced",
               {{"worker", opt_.id},
                {"range", lease.range},
                {"epoch", lease.epoch},
                {"why", s.message()}});
      return Outcome::kLost;
    }
    if (!s.ok()) {
      bool transient = s.code() == Code::kUnavailable;
      if (transient && static_cast<uint32_t>(backoff.attempt()) < opt_.transient_retries) {
        LogEvent(RetryLevel(backoff.attempt() + 2), "batch_retry",
                 {{"worker", opt_.id},
                  {"range", lease.range},
                  {"epoch", lease.epoch},
                  {"attempt", backoff.attempt() + 1},
                  {"error", s.message()}});
        int64_t until = MonotonicMs() + backoff.NextDelayMs();
        while (MonotonicMs() < until && !Stopping()) {
          if (!DrainReplies(lease, 50)) return Outcome::kLost;
          if (MonotonicMs() - last_hb >= heartbeat_ms_) {
            SendHeartbeat(lease);
            last_hb = MonotonicMs();
          }
        }
        continue;
      }
      ReportError(lease, s);
      return Outcome::kGaveBack;
    }
    backoff.Reset();
    lease.digest = copied.digest;
    lease.cursor = std::move(copied.last_key);
    lease.rows += copied.rows;
    lease.bytes += copied.bytes;
    rows_written_ += copied.rows;
    throttle_rows += copied.rows;
  }
}

Status Worker::ReadAndWrite(const TableSchema& schema, const Lease& lease, size_t want,
                            const Fence& fence, CopiedBatch* out) {
  FERRY_RETURN_IF_ERROR(
      source_->ReadBatch(schema, lease.bounds, lease.cursor, want, opt_.batch_bytes, &batch_));
  out->rows = batch_.rows();
  if (out->rows == 0) return Status::Ok();
  FERRY_RETURN_IF_ERROR(target_->WriteBatch(schema, batch_, fence));
  out->bytes = batch_.bytes;
  out->last_key = batch_.keys.back();
  out->digest = FoldDigest(out->digest, batch_, &digest_scratch_);
  return Status::Ok();
}

}  // namespace ferry
