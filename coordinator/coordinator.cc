#include "coordinator/coordinator.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <random>

#include "common/curve.h"
#include "common/key_codec.h"
#include "common/logging.h"
#include "common/wire.h"
#include "coordinator/planner.h"
#include "coordinator/version_check.h"

namespace ferry {
namespace {

constexpr size_t kMaxMessagesPerPass = 4096;
constexpr int kListenBacklog = 4096;

// Receives one whole multipart message without blocking into *frames;
// false if none is waiting. Throws zmq::error_t.
bool RecvAll(zmq::socket_t& sock, std::vector<zmq::message_t>* frames) {
  frames->clear();
  zmq::message_t part;
  if (!sock.recv(part, zmq::recv_flags::dontwait)) return false;
  frames->push_back(std::move(part));
  while (frames->back().more()) {
    zmq::message_t next;
    if (!sock.recv(next, zmq::recv_flags::dontwait)) break;
    frames->push_back(std::move(next));
  }
  return true;
}

std::string NewPlanId() {
  std::random_device rd;
  std::mt19937_64 rng((uint64_t{rd()} << 32) ^ rd());
  return fmt::format("{:016x}", rng());
}

bool FileExists(const std::string& uri) {
  if (uri.rfind("sqlite:", 0) != 0) return true;  // a server: ask it
  struct stat st;
  return stat(uri.substr(7).c_str(), &st) == 0;
}

}  // namespace

Coordinator::Coordinator(CoordinatorOptions options, const Clock* clock, zmq::context_t* ctx)
    : opt_(std::move(options)),
      clock_(clock),
      ctx_(ctx),
      table_(clock, opt_.lease_ttl_ms, opt_.max_attempts) {}

Coordinator::~Coordinator() = default;

Status Coordinator::CheckJobMatches(const JobMeta& stored) {
  auto differ = [](const char* what, const std::string& was, const std::string& now) {
    return InvalidArgument(
        fmt::format("{} is '{}' but the state file was started with '{}': pass "
                    "the same arguments, or use a new --state",
                    what, now, was));
  };
  if (stored.source_uri != RedactUri(opt_.source_uri)) {
    return differ("--source", stored.source_uri, RedactUri(opt_.source_uri));
  }
  if (stored.target_uri != RedactUri(opt_.target_uri)) {
    return differ("--target", stored.target_uri, RedactUri(opt_.target_uri));
  }
  if (stored.from_version != opt_.from_version || stored.to_version != opt_.to_version) {
    return InvalidArgument(fmt::format(
        "versions are {} -> {} but the state file was started with {} -> {}: pass the same "
        "--from-version/--to-version, or use a new --state",
        opt_.from_version, opt_.to_version, stored.from_version, stored.to_version));
  }
  if (stored.tables != opt_.tables) return differ("--tables", stored.tables, opt_.tables);
  return Status::Ok();
}

Status Coordinator::Start() {
  started_ms_ = clock_->NowMs();
  FERRY_RETURN_IF_ERROR(ValidateVersionFlags(opt_.from_version, opt_.to_version));
  if (opt_.lease_ttl_ms < 100) return InvalidArgument("--lease-ttl must be at least 0.1 seconds");
  if (opt_.range_rows == 0) return InvalidArgument("--range-rows must be at least 1");
  if (opt_.batch_rows == 0) return InvalidArgument("--batch-rows must be at least 1");
  if (opt_.curve_secret_key_file.empty() != opt_.curve_allow_file.empty()) {
    return InvalidArgument(
        "--curve-secret-key-file and --curve-allow-file go together: the coordinator's secret key "
        "and the public keys of the workers it accepts");
  }
  if (!opt_.curve_secret_key_file.empty()) {
    FERRY_ASSIGN_OR_RETURN(CurveKeyPair keys, LoadCurveSecretKey(opt_.curve_secret_key_file,
                                                                 "--curve-secret-key-file"));
    curve_secret_ = keys.secret_z85;
    curve_public_ = keys.public_z85;
    FERRY_ASSIGN_OR_RETURN(curve_allowed_,
                           LoadCurveAllowList(opt_.curve_allow_file, "--curve-allow-file"));
  }
  if (opt_.state_path.empty()) return InvalidArgument("--state is required");

  FERRY_ASSIGN_OR_RETURN(lock_, StateLock::Acquire(opt_.state_path));
  FERRY_ASSIGN_OR_RETURN(state_, StateStore::Open(opt_.state_path, clock_));
  FERRY_ASSIGN_OR_RETURN(std::optional<JobMeta> stored, state_->LoadJob());
  if (stored) FERRY_RETURN_IF_ERROR(CheckJobMatches(*stored));

  FERRY_ASSIGN_OR_RETURN(source_, OpenStore(opt_.source_uri, StoreRole::kSource));

  // Versions, read without creating anything in the new store.
  std::optional<int64_t> target_version;
  if (FileExists(opt_.target_uri)) {
    auto peek = OpenStore(opt_.target_uri, StoreRole::kSource);
    if (peek.ok()) {
      FERRY_ASSIGN_OR_RETURN(target_version, (*peek)->ReadVersion());
    }
  }
  FERRY_ASSIGN_OR_RETURN(std::optional<int64_t> legacy_version, source_->ReadVersion());
  FERRY_ASSIGN_OR_RETURN(VersionVerdict verdict, CheckVersions(opt_.from_version, opt_.to_version,
                                                               target_version, legacy_version));
  if (verdict == VersionVerdict::kAlreadyDone) {
    already_done_ = true;
    return Status::Ok();
  }

  FERRY_ASSIGN_OR_RETURN(std::vector<TableSchema> all, source_->ListTables());
  FERRY_ASSIGN_OR_RETURN(tables_, SelectTables(all, stored ? stored->tables : opt_.tables));

  if (stored) {
    job_ = *stored;
    FERRY_ASSIGN_OR_RETURN(std::vector<RangeRecord> ranges, state_->LoadRanges());
    table_.Load(std::move(ranges), job_.last_epoch);
    FERRY_ASSIGN_OR_RETURN(std::vector<WorkerRow> workers, state_->LoadWorkers());
    for (WorkerRow& w : workers) workers_[w.id].row = std::move(w);
    RebuildWorkerLeases();
    FERRY_RETURN_IF_ERROR(PrepareTarget());
    if (opt_.retry_failed && table_.RetryFailed() > 0 && job_.phase == JobPhase::kFailed) {
      job_.phase = JobPhase::kCopying;
      job_.failure.clear();
      job_dirty_ = true;
    }
    LogEvent(spdlog::level::info, "resume",
             {{"plan", job_.plan_id},
              {"ranges", table_.ranges().size()},
              {"done", table_.count(RangeState::kDone)},
              {"leased", table_.count(RangeState::kLeased)},
              {"last_epoch", table_.last_epoch()}});
  } else {
    job_.source_uri = RedactUri(opt_.source_uri);
    job_.target_uri = RedactUri(opt_.target_uri);
    job_.from_version = opt_.from_version;
    job_.to_version = opt_.to_version;
    job_.tables = opt_.tables;
    job_.plan_id = NewPlanId();
    job_.current_version = target_version;
    // Plan now, before any socket is bound or anything is logged: every
    // bad-input error (a table without a usable key, an unwritable target)
    // surfaces as one line and touches no store.
    planning_ = true;
    plan_started_ms_ = MonotonicMs();
    FERRY_RETURN_IF_ERROR(PlanAll());
  }

  // Sockets.
  try {
    router_.emplace(*ctx_, zmq::socket_type::router);
    router_->set(zmq::sockopt::linger, 0);
    router_->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(4 * kMaxFrameBytes));
    router_->set(zmq::sockopt::rcvhwm, 100000);
    router_->set(zmq::sockopt::sndhwm, 100000);
    // A fleet starting at once (1,000 workers) overflows ZeroMQ's default
    // accept backlog of 100: the kernel drops the extra SYNs and those
    // workers retry their connect a second or more later. The kernel caps
    // this at net.core.somaxconn.
    router_->set(zmq::sockopt::backlog, kListenBacklog);
    if (!curve_secret_.empty()) {
      // The ZAP handler must exist before the first handshake.
      zap_.emplace(*ctx_, zmq::socket_type::rep);
      zap_->set(zmq::sockopt::linger, 0);
      zap_->bind("inproc://zeromq.zap.01");
      router_->set(zmq::sockopt::curve_server, 1);
      router_->set(zmq::sockopt::curve_secretkey, curve_secret_);
      router_->set(zmq::sockopt::zap_domain, "ferry");
    }
    inproc_ = fmt::format("inproc://ferry-coordinator-{}", static_cast<const void*>(this));
    router_->bind(inproc_);
    if (!opt_.listen.empty()) {
      router_->bind(opt_.listen);
      listen_bound_ = router_->get(zmq::sockopt::last_endpoint);
    }
  } catch (const zmq::error_t& e) {
    return Unavailable(
        fmt::format("cannot bind --listen {}: {} (is another coordinator using "
                    "it? pick another port)",
                    opt_.listen, e.what()));
  }
  try {
    status_.emplace(*ctx_, zmq::socket_type::rep);
    status_->set(zmq::sockopt::linger, 0);
    status_->set(zmq::sockopt::maxmsgsize, int64_t{4 << 20});
    status_->bind(opt_.status_endpoint);
    status_bound_ = status_->get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Unavailable(fmt::format("cannot bind --status-endpoint {}: {} (pick another port)",
                                   opt_.status_endpoint, e.what()));
  }
  LogEvent(spdlog::level::info, "listening",
           {{"workers", listen_bound_},
            {"status", status_bound_},
            {"source", RedactUri(opt_.source_uri)},
            {"target", RedactUri(opt_.target_uri)},
            {"from_version", opt_.from_version},
            {"to_version", opt_.to_version},
            {"curve_public_key", curve_public_.empty() ? "off" : curve_public_}});
  return Status::Ok();
}

Status Coordinator::PlanNextTable() {
  if (plan_next_table_ < tables_.size()) {
    const TableSchema& t = tables_[plan_next_table_++];
    int64_t t0 = MonotonicMs();
    size_t before = plan_.size();
    FERRY_RETURN_IF_ERROR(PlanTable(*source_, t, opt_.range_rows, &plan_));
    LogEvent(spdlog::level::debug, "plan_table",
             {{"table", t.name}, {"ranges", plan_.size() - before}, {"ms", MonotonicMs() - t0}});
    return Status::Ok();
  }
  FERRY_RETURN_IF_ERROR(PrepareTarget());
  FERRY_RETURN_IF_ERROR(state_->CreateJob(job_, plan_));
  uint64_t est = 0;
  for (const RangeRecord& r : plan_) est += r.est_rows;
  LogEvent(spdlog::level::info, "planned",
           {{"plan", job_.plan_id},
            {"tables", tables_.size()},
            {"ranges", plan_.size()},
            {"rows_estimated", est},
            {"ms", MonotonicMs() - plan_started_ms_}});
  table_.Load(std::move(plan_), 0);
  plan_.clear();
  planning_ = false;
  return Status::Ok();
}

Status Coordinator::PrepareTarget() {
  FERRY_ASSIGN_OR_RETURN(target_, OpenStore(opt_.target_uri, StoreRole::kTarget));
  // Migrations before lifecycle: the target schema exists before any lease.
  FERRY_RETURN_IF_ERROR(target_->CreateSchema(tables_));
  // Workers check it before writing (Store::RecordPlan).
  return target_->RecordPlan(job_.plan_id);
}

Status Coordinator::PlanAll() {
  while (planning_) FERRY_RETURN_IF_ERROR(PlanNextTable());
  return Status::Ok();
}

void Coordinator::RebuildWorkerLeases() {
  for (auto& [id, w] : workers_) w.current_range = 0;
  for (uint64_t id : table_.leased()) {
    const RangeRecord* r = table_.Find(id);
    auto it = workers_.find(r->owner);
    if (it != workers_.end()) it->second.current_range = r->id;
  }
}

Status Coordinator::ReloadFromState() {
  FERRY_ASSIGN_OR_RETURN(std::optional<JobMeta> stored, state_->LoadJob());
  if (!stored) return Internal("state file lost its job");
  job_ = *stored;
  FERRY_ASSIGN_OR_RETURN(std::vector<RangeRecord> ranges, state_->LoadRanges());
  table_.Load(std::move(ranges), job_.last_epoch);
  RebuildWorkerLeases();
  events_.clear();
  dirty_workers_.clear();
  job_dirty_ = false;
  return Status::Ok();
}

Status Coordinator::Run(const std::function<bool()>& should_exit) {
  while (!should_exit()) {
    if (planning_) {
      Status s = PlanNextTable();
      if (!s.ok()) return s;
    }
    Step(100);
  }
  CommitAndReply();
  // The sockets close with linger 0: give the last replies (a worker's
  // "complete") a bounded moment to leave instead of discarding them.
  try {
    router_->set(zmq::sockopt::linger, 1000);
  } catch (const zmq::error_t&) {
  }
  if (complete()) return Status::Ok();
  if (failed()) return Permanent(job_.failure);
  return FailedPrecondition(
      "stopped before the migration completed; start again with the same "
      "arguments to resume");
}

void Coordinator::Step(int timeout_ms) {
  int64_t now = clock_->NowMs();
  int64_t wait = timeout_ms;
  int64_t next_deadline = table_.NextDeadlineMs();
  if (next_deadline != INT64_MAX)
    wait = std::max<int64_t>(0, std::min(wait, next_deadline - now + 1));
  std::vector<zmq::pollitem_t> items = {
      {static_cast<void*>(*router_), 0, ZMQ_POLLIN, 0},
      {static_cast<void*>(*status_), 0, ZMQ_POLLIN, 0},
  };
  if (zap_) items.push_back({static_cast<void*>(*zap_), 0, ZMQ_POLLIN, 0});
  try {
    zmq::poll(items, std::chrono::milliseconds(wait));
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) LogEvent(spdlog::level::warn, "poll_error", {{"error", e.what()}});
  }
  std::vector<zmq::message_t> frames;
  for (size_t n = 0; n < kMaxMessagesPerPass; ++n) {
    try {
      if (!RecvAll(*router_, &frames)) break;
    } catch (const zmq::error_t& e) {
      LogEvent(spdlog::level::warn, "recv_error", {{"error", e.what()}});
      break;
    }
    HandleWorkerFrames(frames);
  }
  try {
    zmq::message_t req;
    if (status_->recv(req, zmq::recv_flags::dontwait)) {
      bool extra = req.more();
      while (req.more()) {
        zmq::message_t drop;
        if (!status_->recv(drop, zmq::recv_flags::dontwait)) break;
        req = std::move(drop);
      }
      metrics_.status_requests++;
      std::string reply;
      if (extra) {
        metrics_.status_errors++;
        reply = R"({"error":"send one frame per command; try 'help'"})";
      } else {
        reply = HandleCommand(req.to_string());
      }
      status_reply_.emplace(reply.data(), reply.size());
    }
  } catch (const zmq::error_t& e) {
    LogEvent(spdlog::level::warn, "status_recv_error", {{"error", e.what()}});
  }
  if (zap_) ServeZap();
  Expire();
  MaybeFinish();
  ServeWaiting();
  CommitAndReply();
  Mirror();
  SampleRate();
  LogProgress();
}

void Coordinator::LogProgress() {
  int64_t now = MonotonicMs();
  if (planning_ || now < next_progress_ms_) return;
  next_progress_ms_ = now + 2000;
  if (job_.phase != JobPhase::kCopying || !spdlog::should_log(spdlog::level::info)) return;
  const nlohmann::json st = StatusFields();
  LogEvent(spdlog::level::info, "progress",
           {{"rows", st["rows_copied"]},
            {"rows_estimated", st["rows_estimated"]},
            {"rows_per_second", st["rows_per_second"]},
            {"eta_seconds", st["eta_seconds"]},
            {"ranges_done", st["ranges_done"]},
            {"ranges_total", st["ranges_total"]},
            {"workers", st["workers_live"]}});
}

void Coordinator::LogRoutine(const char* kind, uint64_t range, uint64_t epoch,
                             const std::string& worker, const std::string& detail) {
  LogEvent(spdlog::level::info, kind,
           {{"range", range}, {"epoch", epoch}, {"worker", worker}, {"detail", detail}});
}

void Coordinator::Record(Event e) {
  auto level = (e.kind == "range_error" || e.kind == "range_failed" || e.kind == "expire" ||
                e.kind == "worker_refused")
                   ? spdlog::level::warn
                   : spdlog::level::info;
  if (spdlog::should_log(level)) {
    LogEvent(level, e.kind,
             {{"range", e.range}, {"epoch", e.epoch}, {"worker", e.worker}, {"detail", e.detail}});
  }
  events_.push_back(std::move(e));
}

void Coordinator::Expire() {
  for (const LeaseTable::Expired& e : table_.ExpireDue()) {
    metrics_.expiries++;
    auto it = workers_.find(e.owner);
    if (it != workers_.end() && it->second.current_range == e.range) it->second.current_range = 0;
    Record(Event{clock_->NowMs(), "expire", e.range, e.epoch, e.owner, "lease deadline passed"});
  }
}

void Coordinator::MaybeFinish() {
  if (planning_ || job_.phase != JobPhase::kCopying) return;
  if (table_.last_epoch() != job_.last_epoch) {
    job_.last_epoch = table_.last_epoch();
    job_dirty_ = true;
  }
  if (table_.AllDone()) {
    // The last completion, the boundary clear and the version bump commit
    // together (CommitAndReply runs next, in this same pass).
    job_.phase = JobPhase::kComplete;
    job_.current_version = job_.to_version;
    job_.boundary.clear();
    job_.mirrored = false;
    job_dirty_ = true;
    Record(Event{clock_->NowMs(), "finalize", 0, 0, "",
                 fmt::format("version {} -> {}, rows={}", job_.from_version, job_.to_version,
                             RowsCopied())});
    return;
  }
  if (table_.Failed()) {
    job_.phase = JobPhase::kFailed;
    for (const RangeRecord& r : table_.ranges()) {
      if (r.state == RangeState::kFailed) {
        job_.failure = fmt::format("range {} ({} from {}) failed: {}", r.id, r.table,
                                   r.lo.empty() ? "start" : KeyToString(r.lo), r.last_error);
        break;
      }
    }
    job_dirty_ = true;
    Record(Event{clock_->NowMs(), "failed", 0, 0, "", job_.failure});
    return;
  }
  std::string b = table_.Boundary();
  if (b != job_.boundary) {
    job_.boundary = std::move(b);
    job_dirty_ = true;
  }
}

void Coordinator::CommitAndReply() {
  std::vector<uint64_t> dirty = table_.TakeDirty();
  if (!dirty.empty() || !events_.empty() || job_dirty_ || !dirty_workers_.empty()) {
    StateCommit c;
    c.job = planning_ ? nullptr : &job_;  // the job row is written by CreateJob
    for (uint64_t id : dirty) c.ranges.push_back(table_.Find(id));
    c.events = std::move(events_);
    c.workers = std::move(dirty_workers_);
    const int64_t t0 = MonotonicUs();
    Status s = state_->Commit(c);
    events_.clear();
    dirty_workers_.clear();
    if (!s.ok()) {
      metrics_.commit_failures++;
      LogEvent(spdlog::level::err, "state_commit_failed",
               {{"error", s.message()}, {"action", "state reloaded; workers will retry"}});
      Status r = ReloadFromState();
      if (!r.ok()) LogEvent(spdlog::level::err, "state_reload_failed", {{"error", r.message()}});
      replies_.clear();
      if (status_reply_) {
        std::string err = nlohmann::json{{"error", "state commit failed: " + s.message()}}.dump();
        status_reply_.emplace(err.data(), err.size());
      }
    } else {
      metrics_.commits++;
      metrics_.commit_seconds.Observe((MonotonicUs() - t0) / 1e6);
      job_dirty_ = false;
    }
  }
  for (Reply& r : replies_) {
    try {
      router_->send(r.identity, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router_->send(r.payload, zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      LogEvent(spdlog::level::debug, "send_error", {{"error", e.what()}});
    }
  }
  replies_.clear();
  if (status_reply_) {
    try {
      status_->send(*status_reply_, zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      LogEvent(spdlog::level::debug, "status_send_error", {{"error", e.what()}});
    }
    status_reply_.reset();
  }
}

void Coordinator::Mirror() {
  if (planning_ || !target_) return;
  bool finished = job_.phase == JobPhase::kComplete;
  if (!mirror_needed_ && !(finished && !job_.mirrored) && job_.boundary == mirrored_boundary_)
    return;
  int64_t now = clock_->NowMs();
  if (!finished && !mirror_needed_ && now < next_mirror_ms_) return;
  next_mirror_ms_ = now + 1000;
  Marker m;
  if (finished) m.version = job_.to_version;
  m.boundary = finished ? std::string() : job_.boundary;
  Status s = target_->WriteMarker(m);
  if (!s.ok()) {
    LogEvent(spdlog::level::warn, "mirror_failed",
             {{"error", s.message()}, {"action", "retrying in 1 s"}});
    return;
  }
  mirrored_boundary_ = m.boundary;
  mirror_needed_ = false;
  if (finished && !job_.mirrored) {
    job_.mirrored = true;
    job_dirty_ = true;
    LogEvent(spdlog::level::info, "version_marked",
             {{"version", job_.to_version}, {"target", RedactUri(opt_.target_uri)}});
  }
}

void Coordinator::ServeZap() {
  // ZAP (ZeroMQ RFC 27): version, request id, domain, address, identity,
  // mechanism, credentials -> version, request id, status code, status
  // text, user id, metadata. REP: one answer before the next request.
  for (size_t n = 0; n < kMaxMessagesPerPass; ++n) {
    std::vector<zmq::message_t> req;
    try {
      if (!RecvAll(*zap_, &req)) return;
    } catch (const zmq::error_t& e) {
      LogEvent(spdlog::level::warn, "zap_recv_error", {{"error", e.what()}});
      return;
    }
    std::string key;
    if (req.size() >= 7 && req[5].to_string_view() == "CURVE" && req[6].size() == 32) {
      char z85[41];
      zmq_z85_encode(z85, static_cast<const uint8_t*>(req[6].data()), 32);
      key = z85;
    }
    const bool ok = !key.empty() && curve_allowed_.count(key) > 0;
    if (!ok) {
      metrics_.auth_rejected++;
      auth_unlogged_++;
      const int64_t now = MonotonicMs();
      if (now - auth_log_ms_ >= 1000) {  // one line a second, however many knock
        LogEvent(spdlog::level::warn, "auth_rejected",
                 {{"address", req.size() > 3 ? req[3].to_string() : ""},
                  {"key", key},
                  {"rejected", auth_unlogged_},
                  {"check", "add the worker's public key to --curve-allow-file"}});
        auth_log_ms_ = now;
        auth_unlogged_ = 0;
      }
    }
    const std::string request_id = req.size() > 1 ? req[1].to_string() : "";
    const std::string fields[] = {
        "1.0", request_id, ok ? "200" : "400", ok ? "OK" : "key not allowed", ok ? key : "", ""};
    try {
      for (size_t i = 0; i < 6; ++i) {
        zap_->send(zmq::buffer(fields[i]),
                   i < 5 ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      LogEvent(spdlog::level::warn, "zap_send_error", {{"error", e.what()}});
      return;
    }
  }
}

bool Coordinator::AllWorkersToldDone() const {
  const int64_t now = clock_->NowMs();
  for (const auto& [id, w] : workers_) {
    const bool live = w.row.state != "gone" && now - w.row.last_seen_ms <= 3 * table_.ttl_ms();
    if (live && !w.draining && !w.told_done) return false;
  }
  return true;
}

uint64_t Coordinator::RowsCopied() const { return table_.rows_total(); }

uint64_t Coordinator::BytesCopied() const { return table_.bytes_total(); }

void Coordinator::SampleRate() {
  int64_t now = MonotonicMs();
  if (!rate_samples_.empty() && now - rate_samples_.back().first < 500) return;
  rate_samples_.emplace_back(now, RowsCopied());
  while (rate_samples_.size() > 2 && now - rate_samples_.front().first > 10000) {
    rate_samples_.pop_front();
  }
  for (auto& [id, w] : workers_) {
    if (now - w.rate_mark_ms >= 2000) {
      if (w.rate_mark_ms) {
        w.rows_per_second = (w.rows - w.rate_mark_rows) * 1000.0 / (now - w.rate_mark_ms);
      }
      w.rate_mark_ms = now;
      w.rate_mark_rows = w.rows;
    }
  }
}

}  // namespace ferry
