#include "coordinator/coordinator_server.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <sstream>

#include "common/curve.h"
#include "common/logging.h"
#include "common/version.h"
#include "common/wire.h"
#include "coordinator/job_setup.h"
#include "coordinator/worker_codec.h"
#include "spec/replay_plan.h"

namespace ferry {
namespace {

constexpr size_t kMaxMessagesPerPass = 4096;
constexpr int kListenBacklog = 4096;
constexpr int kStatusRequestBytes = 4 << 20;

// host:pid:random — names this process in the state's leader row.
std::string DefaultProcessId() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  return fmt::format("{}:{}:{:04x}", host, getpid(), rd() & 0xffff);
}

// How others reach `bound` (a ZeroMQ last_endpoint): a wildcard address
// (0.0.0.0, [::], *) is replaced by this host's name, so a standby can tell
// workers and operators where the leader is.
std::string Advertised(const std::string& bound) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  for (const char* any : {"://0.0.0.0:", "://[::]:", "://*:"}) {
    const size_t at = bound.find(any);
    if (at != std::string::npos) {
      return bound.substr(0, at) + "://" + host + ":" + bound.substr(at + std::strlen(any));
    }
  }
  return bound;
}

}  // namespace

CoordinatorServer::CoordinatorServer(CoordinatorOptions options, const Clock* clock,
                                     zmq::context_t* ctx)
    : opt_(std::move(options)), clock_(clock), ctx_(ctx) {}

CoordinatorServer::~CoordinatorServer() = default;

Status CoordinatorServer::Start() {
  started_ms_ = clock_->NowMs();
  if (opt_.curve_secret_key_file.empty() != opt_.curve_allow_file.empty()) {
    return InvalidArgument(
        "--curve-secret-key-file and --curve-allow-file go together: the coordinator's secret key "
        "and the public keys of the workers it accepts");
  }
  std::string curve_secret, curve_public;
  std::set<std::string> curve_allowed;
  if (!opt_.curve_secret_key_file.empty()) {
    FERRY_ASSIGN_OR_RETURN(CurveKeyPair keys, LoadCurveSecretKey(opt_.curve_secret_key_file,
                                                                 "--curve-secret-key-file"));
    curve_secret = keys.secret_z85;
    curve_public = keys.public_z85;
    FERRY_ASSIGN_OR_RETURN(curve_allowed,
                           LoadCurveAllowList(opt_.curve_allow_file, "--curve-allow-file"));
  }
  if (opt_.status_curve_secret_key_file.empty() != opt_.status_curve_allow_file.empty()) {
    return InvalidArgument(
        "--status-curve-secret-key-file and --status-curve-allow-file go together: the status "
        "socket's secret key and the public keys of the operators (ferryctl) it answers");
  }
  std::string status_secret, status_public;
  std::set<std::string> status_allowed;
  if (!opt_.status_curve_secret_key_file.empty()) {
    FERRY_ASSIGN_OR_RETURN(CurveKeyPair keys, LoadCurveSecretKey(opt_.status_curve_secret_key_file,
                                                                 "--status-curve-secret-key-file"));
    status_secret = keys.secret_z85;
    status_public = keys.public_z85;
    FERRY_ASSIGN_OR_RETURN(status_allowed, LoadCurveAllowList(opt_.status_curve_allow_file,
                                                              "--status-curve-allow-file"));
  }
  FERRY_ASSIGN_OR_RETURN(policy_, LeasePolicy::ForTtl(opt_.lease_ttl_ms));
  FERRY_RETURN_IF_ERROR(ValidateFlags(opt_));
  // A spec that does not fit the stores is refused before the state (and
  // its lock) or the new store exist.
  FERRY_RETURN_IF_ERROR(CheckSpecAgainstStores(opt_));
  FERRY_ASSIGN_OR_RETURN(state_, OpenStateStore(opt_.state_path, clock_, policy_.ttl_ms));
  {
    // A coordinator with other arguments than the job's is refused at once,
    // leader or standby.
    FERRY_ASSIGN_OR_RETURN(std::optional<JobMeta> stored, state_->LoadJob());
    if (stored) FERRY_RETURN_IF_ERROR(CheckJobMatches(opt_, *stored));
  }
  me_.id = DefaultProcessId();
  FERRY_ASSIGN_OR_RETURN(queries_, StatusQueries::Create());
  if (!curve_secret.empty() || !status_secret.empty()) {
    FERRY_ASSIGN_OR_RETURN(zap_, ZapHandler::Bind(ctx_));
  }
  if (!curve_secret.empty()) {
    zap_->AddDomain("ferry", std::move(curve_allowed),
                    "add the worker's public key to --curve-allow-file");
  }
  if (!status_secret.empty()) {
    zap_->AddDomain("ferry-status", std::move(status_allowed),
                    "add the operator's public key (ferryctl --curve-secret-key-file's FILE.pub) "
                    "to --status-curve-allow-file");
  }
  if (!state_->shared()) {
    // One process per state: lead, and open the job before binding, so bad
    // input fails as one line before any socket is bound.
    FERRY_RETURN_IF_ERROR(state_->TryLead(me_, policy_.ttl_ms).status());
    FERRY_RETURN_IF_ERROR(Lead());
    if (already_done_) return Status::Ok();
    FERRY_RETURN_IF_ERROR(BindSockets(curve_secret, status_secret));
  } else {
    FERRY_RETURN_IF_ERROR(BindSockets(curve_secret, status_secret));
    me_.listen = Advertised(listen_bound_);
    me_.status = Advertised(status_bound_);
    FERRY_ASSIGN_OR_RETURN(bool lead, state_->TryLead(me_, policy_.ttl_ms));
    if (lead) {
      FERRY_RETURN_IF_ERROR(Lead());
      if (already_done_) return Status::Ok();
    } else {
      auto leader = state_->Leader();
      if (leader.ok()) leader_ = *leader;
      LogEvent(spdlog::level::info, "standby",
               {{"leader", leader_ ? leader_->id : ""},
                {"leader_endpoint", leader_ ? leader_->listen : ""},
                {"state", state_->Describe()}});
    }
  }
  LogEvent(spdlog::level::info, "listening",
           {{"workers", listen_bound_},
            {"status", status_bound_},
            {"role", leading() ? "leader" : "standby"},
            {"source", RedactUri(opt_.source_uri)},
            {"target", RedactUri(opt_.target_uri)},
            {"from_version", opt_.from_version},
            {"to_version", opt_.to_version},
            {"curve_public_key", curve_public.empty() ? "off" : curve_public},
            {"status_curve_public_key", status_public.empty() ? "off" : status_public}});
  return Status::Ok();
}

Status CoordinatorServer::Lead(bool takeover) {
  FERRY_ASSIGN_OR_RETURN(OpenedJob job, OpenJob(opt_, state_.get(), takeover));
  if (job.already_done) {
    already_done_ = true;
    state_->ResignLead();
    return Status::Ok();
  }
  source_ = std::move(job.source);
  target_ = std::move(job.target);
  ServiceSettings settings = ServiceSettingsFor(opt_, policy_);
  for (const TableSchema& t : CapturedTables(job.targets)) {
    settings.online_tables.push_back(t.name);
  }
  settings.spec_text = job.job.spec_text;
  Store* target = target_.get();
  settings.sample_rejects = [target](size_t n) {
    std::vector<std::string> out;
    auto rejects = target->ReadRejects("", n);
    if (rejects.ok()) {
      for (const Reject& r : *rejects) {
        out.push_back(fmt::format("{} {}: {}", r.table, r.source_key, r.reason));
      }
    }
    return out;
  };
  service_ = std::make_unique<LeaseService>(std::move(settings), clock_);
  service_->Load(std::move(job.job), std::move(job.ranges), std::move(job.workers));
  if (opt_.online) online_ = OpenOnlinePhase(opt_, &job, service_.get(), target_.get(), clock_);
  if (job.resumed) {
    if (opt_.retry_failed) service_->RetryFailed();
    const LeaseTable& t = service_->table();
    LogEvent(spdlog::level::info, "resume",
             {{"plan", service_->job().plan_id},
              {"ranges", t.ranges().size()},
              {"done", t.count(RangeState::kDone)},
              {"leased", t.count(RangeState::kLeased)},
              {"last_epoch", t.last_epoch()}});
  }
  commands_ = std::make_unique<StatusCommands>(
      service_.get(), state_.get(), clock_,
      StatusContext{RedactUri(opt_.source_uri), RedactUri(opt_.target_uri), started_ms_,
                    opt_.stall_ms, &metrics_, &state_error_, online_.get()});
  mirror_ = std::make_unique<MarkerMirror>(target_.get(), clock_);
  last_renewed_ms_ = MonotonicMs();
  leader_.reset();
  if (state_->shared()) {
    LogEvent(spdlog::level::info, "leading",
             {{"id", me_.id}, {"state", state_->Describe()}, {"workers", listen_bound_}});
  }
  return Status::Ok();
}

void CoordinatorServer::StepDown(const std::string& why) {
  LogEvent(spdlog::level::warn, "stepped_down",
           {{"id", me_.id},
            {"why", why},
            {"action", "standing by; the coordinator that leads the state takes over"}});
  replies_.clear();
  waiting_from_.clear();
  if (status_reply_) {
    // The status socket is REP: a request read in this pass must be
    // answered, or it answers nothing ever again. What the deposed leader
    // knew is not an answer any more.
    const std::string err =
        ErrorJson("this coordinator no longer leads (" + why + "); ask again: it stands by");
    try {
      status_->send(zmq::buffer(err), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
    status_reply_.reset();
  }
  commands_.reset();
  mirror_.reset();
  online_.reset();  // a freeze in progress is rolled back
  service_.reset();
  target_.reset();
  source_.reset();
  next_lead_try_ms_ = MonotonicMs() + policy_.ttl_ms;  // let the new leader settle
}

void CoordinatorServer::KeepLead() {
  const int64_t now = MonotonicMs();
  if (!state_->shared()) {
    last_renewed_ms_ = now;  // a state only this process can open: always led
    return;
  }
  if (now - last_renewed_ms_ < policy_.ttl_ms / 3) return;
  Status s = state_->RenewLead();
  if (s.ok()) {
    last_renewed_ms_ = now;
    return;
  }
  if (s.code() == Code::kLeaseLost) return StepDown(s.message());
  LogEvent(spdlog::level::warn, "renew_failed",
           {{"error", s.message()}, {"check", "is the state database reachable?"}});
  // Not renewed for a whole TTL: another coordinator may lead by now.
  if (now - last_renewed_ms_ >= policy_.ttl_ms) {
    StepDown("could not renew the lead for a whole lease TTL: " + s.message());
  }
}

Status CoordinatorServer::BindSockets(const std::string& curve_secret,
                                      const std::string& status_curve_secret) {
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
    if (!curve_secret.empty()) {
      router_->set(zmq::sockopt::curve_server, 1);
      router_->set(zmq::sockopt::curve_secretkey, curve_secret);
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
    status_->set(zmq::sockopt::maxmsgsize, int64_t{kStatusRequestBytes});
    if (!status_curve_secret.empty()) {
      status_->set(zmq::sockopt::curve_server, 1);
      status_->set(zmq::sockopt::curve_secretkey, status_curve_secret);
      status_->set(zmq::sockopt::zap_domain, "ferry-status");
    }
    status_->bind(opt_.status_endpoint);
    status_bound_ = status_->get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Unavailable(fmt::format("cannot bind --status-endpoint {}: {} (pick another port)",
                                   opt_.status_endpoint, e.what()));
  }
  return Status::Ok();
}

Status CoordinatorServer::Run(const std::function<bool()>& should_exit) {
  while (!should_exit() && !already_done_) Step(100);
  if (already_done_) return Status::Ok();
  if (leading()) {
    CommitAndReply();
    state_->ResignLead();
  }
  // The sockets close with linger 0: give the last replies (a worker's
  // "complete") a bounded moment to leave instead of discarding them.
  try {
    router_->set(zmq::sockopt::linger, 1000);
  } catch (const zmq::error_t&) {
  }
  if (complete()) return Status::Ok();
  if (failed()) return Permanent(service_->job().failure);
  return FailedPrecondition(
      "stopped before the migration completed; start again with the same "
      "arguments to resume");
}

void CoordinatorServer::Step(int timeout_ms) {
  const int64_t now = clock_->NowMs();
  int64_t wait = timeout_ms;
  if (MonotonicMs() < commit_backoff_until_) {
    wait = std::clamp<int64_t>(commit_backoff_until_ - MonotonicMs(), 1, timeout_ms);
  } else if (service_) {
    const int64_t next_deadline = service_->table().NextDeadlineMs();
    if (next_deadline != INT64_MAX) {
      wait = std::max<int64_t>(0, std::min(wait, next_deadline - now + 1));
    }
  }
  std::vector<zmq::pollitem_t> items = {
      {static_cast<void*>(*router_), 0, ZMQ_POLLIN, 0},
      {static_cast<void*>(*status_), 0, ZMQ_POLLIN, 0},
      {nullptr, queries_->wake_fd(), ZMQ_POLLIN, 0},
  };
  if (zap_) items.push_back({static_cast<void*>(zap_->socket()), 0, ZMQ_POLLIN, 0});
  try {
    zmq::poll(items, std::chrono::milliseconds(wait));
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) LogEvent(spdlog::level::warn, "poll_error", {{"error", e.what()}});
  }
  if (zap_) {
    zap_->Serve();
    metrics_.auth_rejected = zap_->rejected();
  }
  if (!service_) return StandbyPass();
  if (MonotonicMs() < commit_backoff_until_) {
    // The state could not take the last commit: answer operators (read-only
    // commands), leave workers' messages queued, try again later. A shared
    // state's lead not confirmed for a whole TTL may be another's by now.
    if (state_->shared() && MonotonicMs() - last_renewed_ms_ >= policy_.ttl_ms) {
      return StepDown("could not commit to the state for a whole lease TTL: " + state_error_);
    }
    ReadStatusRequest();
    if (status_reply_) {
      try {
        status_->send(*status_reply_, zmq::send_flags::dontwait);
      } catch (const zmq::error_t&) {
      }
      status_reply_.reset();
    }
    queries_->Serve([this](const std::string& line) { return commands_->Handle(line); });
    return;
  }
  ReadWorkerFrames();
  ReadStatusRequest();
  service_->Tick();
  if (online_) online_->Step();  // cut-over steps commit with this pass
  AnswerWaiting();
  CommitAndReply();
  if (!service_) return;  // deposed by the commit
  queries_->Serve([this](const std::string& line) { return commands_->Handle(line); });
  KeepLead();
  if (!service_) return;  // deposed: the renewal said so
  // Mirror only what this process knows it may still decide: its lead was
  // confirmed (a commit or renewal) within the last TTL. A coordinator that
  // was paused must not write an older boundary over the new leader's.
  if (MonotonicMs() - last_renewed_ms_ < policy_.ttl_ms && mirror_->Update(service_->job())) {
    service_->MarkMirrored();
  }
  service_->SampleRates();
  LogProgress();
}

std::string CoordinatorServer::HandleCommand(const std::string& line) {
  return commands_ ? commands_->Handle(line) : StandbyAnswer(line);
}

void CoordinatorServer::StandbyPass() {
  ReadStandbyFrames();
  try {
    zmq::message_t req;
    if (status_->recv(req, zmq::recv_flags::dontwait)) {
      while (req.more()) {
        zmq::message_t drop;
        if (!status_->recv(drop, zmq::recv_flags::dontwait)) break;
        req = std::move(drop);
      }
      metrics_.status_requests++;
      const std::string reply = StandbyAnswer(req.to_string());
      status_->send(zmq::buffer(reply), zmq::send_flags::dontwait);
    }
  } catch (const zmq::error_t& e) {
    LogEvent(spdlog::level::debug, "status_error", {{"error", e.what()}});
  }
  queries_->Serve([this](const std::string& line) { return StandbyAnswer(line); });
  const int64_t now = MonotonicMs();
  if (now < next_lead_try_ms_) return;
  next_lead_try_ms_ = now + 500;
  auto lead = state_->TryLead(me_, policy_.ttl_ms);
  if (!lead.ok()) {
    LogEvent(spdlog::level::debug, "lead_try_failed", {{"error", lead.status().message()}});
    return;
  }
  if (!*lead) {
    auto leader = state_->Leader();
    if (leader.ok()) leader_ = *leader;
    return;
  }
  Status s = Lead(/*takeover=*/true);
  if (!s.ok()) {
    LogEvent(spdlog::level::err, "takeover_failed",
             {{"error", s.message()}, {"action", "giving the lead back; trying again later"}});
    service_.reset();
    commands_.reset();
    mirror_.reset();
    online_.reset();
    state_->ResignLead();
    next_lead_try_ms_ = now + policy_.ttl_ms;
    return;
  }
  if (!already_done_) {
    LogEvent(spdlog::level::warn, "took_over",
             {{"id", me_.id}, {"state", state_->Describe()}, {"workers", listen_bound_}});
  }
}

std::string CoordinatorServer::StandbyAnswer(const std::string& line) {
  std::istringstream in(line);
  std::string cmd;
  in >> cmd;
  nlohmann::json leader = leader_ ? nlohmann::json(leader_->id) : nlohmann::json(nullptr);
  if (cmd == "status") {
    return nlohmann::json{{"state", "standby"},
                          {"leader", leader},
                          {"leader_endpoint", leader_ ? leader_->listen : ""},
                          {"leader_status_endpoint", leader_ ? leader_->status : ""},
                          {"leader_term", leader_ ? leader_->term : 0},
                          {"id", me_.id},
                          {"from_version", opt_.from_version},
                          {"to_version", opt_.to_version},
                          {"uptime_seconds", (clock_->NowMs() - started_ms_) / 1000},
                          {"version", kFerryVersion}}
        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  if (cmd == "metrics") {
    std::string out;
    RenderGauge("ferry_standby", "1 while this coordinator stands by (another one leads).", 1,
                &out);
    RenderCounter("ferry_status_requests_total", "Status socket requests.",
                  metrics_.status_requests, &out);
    return out;
  }
  return nlohmann::json{
      {"error", fmt::format("this coordinator stands by; ask the one that leads{}",
                            leader_ ? " at " + leader_->status : "")},
      {"state", "standby"},
      {"leader", leader}}
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void CoordinatorServer::ReadStandbyFrames() {
  std::vector<zmq::message_t> frames;
  const std::string why =
      leader_ ? fmt::format("this coordinator stands by; the active one is {} ({})",
                            leader_->listen, leader_->id)
              : std::string("this coordinator stands by; no coordinator leads right now");
  for (size_t n = 0; n < kMaxMessagesPerPass; ++n) {
    try {
      if (!RecvAll(*router_, &frames)) return;
    } catch (const zmq::error_t& e) {
      return;
    }
    if (frames.size() != 2) continue;
    uint64_t rid = 0;
    auto decoded = DecodeRequest(frames[1].data(), frames[1].size());
    if (auto* d = std::get_if<DecodedRequest>(&decoded)) rid = d->request_id;
    if (auto* b = std::get_if<RejectedFrame>(&decoded)) rid = b->request_id;
    zmq::message_t reply = EncodeReply(rid, ErrorReply{ErrorCode::kUnavailable, why});
    try {
      router_->send(frames[0], zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router_->send(reply, zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }
}

void CoordinatorServer::ReadWorkerFrames() {
  std::vector<zmq::message_t> frames;
  for (size_t n = 0; n < kMaxMessagesPerPass; ++n) {
    try {
      if (!RecvAll(*router_, &frames)) return;
    } catch (const zmq::error_t& e) {
      LogEvent(spdlog::level::warn, "recv_error", {{"error", e.what()}});
      return;
    }
    if (frames.empty()) continue;
    if (frames.size() != 2) {
      metrics_.malformed++;
      LogEvent(spdlog::level::debug, "malformed",
               {{"reason", "frame count"}, {"frames", frames.size()}});
      if (frames.size() > 1) {
        replies_.push_back(Outgoing{
            std::move(frames[0]),
            EncodeReply(0,
                        ErrorReply{ErrorCode::kBadMessage, "send exactly one frame per message"})});
      }
      continue;
    }
    std::optional<zmq::message_t> reply =
        HandleFrame(frames[0], frames[1].data(), frames[1].size());
    if (reply) replies_.push_back(Outgoing{std::move(frames[0]), std::move(*reply)});
  }
}

std::optional<zmq::message_t> CoordinatorServer::HandleFrame(const zmq::message_t& identity,
                                                             const void* data, size_t size) {
  auto decoded = DecodeRequest(data, size);
  if (auto* bad = std::get_if<RejectedFrame>(&decoded)) {
    if (bad->error.code == ErrorCode::kVersionMismatch) {
      metrics_.version_mismatch++;
    } else {
      metrics_.malformed++;
      LogEvent(spdlog::level::debug, "malformed", {{"reason", bad->error.message}});
    }
    return EncodeReply(bad->request_id, bad->error);
  }
  auto& req = std::get<DecodedRequest>(decoded);
  std::optional<Reply> reply = Route(req.request_id, req.request, identity);
  if (!reply) return std::nullopt;
  return EncodeReply(req.request_id, *reply);
}

std::optional<Reply> CoordinatorServer::Route(uint64_t request_id, const Request& request,
                                              const zmq::message_t& identity) {
  std::optional<Reply> reply;
  const std::string* waiter = nullptr;
  if (const auto* r = std::get_if<RegisterRequest>(&request)) {
    if (auto refused = service_->RefuseWorker(*r)) {
      reply = std::move(*refused);
    } else {
      reply = service_->Register(*r);
    }
  } else if (const auto* l = std::get_if<LeaseRequest>(&request)) {
    reply = service_->RequestLease(request_id, *l, /*may_wait=*/true);
    waiter = &l->worker;
  } else if (const auto* p = std::get_if<ProgressReport>(&request)) {
    reply = service_->Report(request_id, *p, /*may_wait=*/true);
    waiter = &p->lease.worker;
  } else if (const auto* e = std::get_if<ErrorReport>(&request)) {
    reply = service_->ReportError(*e);
  } else if (const auto* a = std::get_if<ApplyReportRequest>(&request)) {
    reply = service_->ApplyReport(*a);
  }
  if (!reply && waiter) {
    // The service holds the request: remember whom to answer (a resent
    // request replaces the one its worker gave up on).
    waiting_from_[*waiter] = zmq::message_t(identity.data(), identity.size());
  }
  return reply;
}

void CoordinatorServer::AnswerWaiting() {
  for (LeaseService::Answer& a : service_->AnswerWaiting()) {
    auto it = waiting_from_.find(a.worker);
    if (it == waiting_from_.end()) continue;
    replies_.push_back(Outgoing{std::move(it->second), EncodeReply(a.request_id, a.reply)});
    waiting_from_.erase(it);
  }
}

void CoordinatorServer::ReadStatusRequest() {
  try {
    zmq::message_t req;
    if (!status_->recv(req, zmq::recv_flags::dontwait)) return;
    const bool extra = req.more();
    while (req.more()) {
      zmq::message_t drop;
      if (!status_->recv(drop, zmq::recv_flags::dontwait)) break;
      req = std::move(drop);
    }
    metrics_.status_requests++;
    const std::string line = req.to_string();
    status_mutating_ = !extra && !StatusCommands::IsReadOnly(line);
    std::string reply;
    if (extra) {
      reply = ErrorJson("send one frame per command; try 'help'");
    } else if (status_mutating_ && MonotonicMs() < commit_backoff_until_) {
      reply = ErrorJson("the coordinator's state cannot be written right now (" + state_error_ +
                        "); try again when it can");
    } else {
      reply = commands_->Handle(line);
    }
    status_reply_.emplace(reply.data(), reply.size());
  } catch (const zmq::error_t& e) {
    LogEvent(spdlog::level::warn, "status_recv_error", {{"error", e.what()}});
  }
}

void CoordinatorServer::CommitAndReply() {
  StateCommit c = service_->TakeCommit();
  if (!c.empty()) {
    const int64_t t0 = MonotonicUs();
    Status s = state_->Commit(c);
    if (!s.ok()) {
      metrics_.commit_failures++;
      replies_.clear();
      if (status_reply_ && status_mutating_) {
        // A read-only answer stands; a change the operator asked for did not
        // happen.
        const std::string err = ErrorJson("state commit failed: " + s.message());
        status_reply_.emplace(err.data(), err.size());
        try {
          status_->send(*status_reply_, zmq::send_flags::dontwait);
        } catch (const zmq::error_t&) {
        }
        status_reply_.reset();
      }
      if (s.code() == Code::kLeaseLost) return StepDown(s.message());
      commit_backoff_ms_ = std::clamp<int64_t>(commit_backoff_ms_ * 2, 100, 5000);
      commit_backoff_until_ = MonotonicMs() + commit_backoff_ms_;
      state_error_ = s.message();
      LogEvent(spdlog::level::err, "state_commit_failed",
               {{"error", s.message()},
                {"failures", metrics_.commit_failures},
                {"action", fmt::format("state reloaded; workers retry; next try in {} ms",
                                       commit_backoff_ms_)},
                {"check", "is the state's disk full, or its server reachable?"}});
      ReloadAfterFailedCommit();
      if (status_reply_) {
        try {
          status_->send(*status_reply_, zmq::send_flags::dontwait);
        } catch (const zmq::error_t&) {
        }
        status_reply_.reset();
      }
      return;
    }
    metrics_.commits++;
    metrics_.commit_seconds.Observe((MonotonicUs() - t0) / 1e6);
    commit_backoff_ms_ = 0;
    state_error_.clear();
    last_renewed_ms_ = MonotonicMs();  // the commit renewed the lead
  }
  for (Outgoing& r : replies_) {
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

void CoordinatorServer::ReloadAfterFailedCommit() {
  auto job = state_->LoadJob();
  auto ranges = job.ok() ? state_->LoadRanges() : Result<std::vector<RangeRecord>>(job.status());
  if (job.ok() && job->has_value() && ranges.ok()) {
    service_->Restore(std::move(**job), std::move(*ranges));
    return;
  }
  // The decisions of the failed pass are in memory only: serving from them
  // could hand out an epoch that no restart would know. Stand by until the
  // state can be read again (a lone coordinator takes its own lead back).
  StepDown("the state cannot be read after a failed commit: " +
           (!job.ok() ? job.status().message()
                      : (!ranges.ok() ? ranges.status().message() : "it lost its job")));
  if (!state_->shared()) next_lead_try_ms_ = MonotonicMs() + 500;
}

void CoordinatorServer::LogProgress() {
  const int64_t now = MonotonicMs();
  if (now < next_progress_ms_) return;
  next_progress_ms_ = now + 2000;
  if (service_->job().phase != JobPhase::kCopying || !spdlog::should_log(spdlog::level::info)) {
    return;
  }
  const nlohmann::json st = commands_->StatusFields();
  LogEvent(spdlog::level::info, "progress",
           {{"rows", st["rows_copied"]},
            {"rows_estimated", st["rows_estimated"]},
            {"rows_per_second", st["rows_per_second"]},
            {"eta_seconds", st["eta_seconds"]},
            {"ranges_done", st["ranges_done"]},
            {"ranges_total", st["ranges_total"]},
            {"workers", st["workers_live"]}});
}

}  // namespace ferry
