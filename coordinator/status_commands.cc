// The status socket's commands: one UTF-8 command line in, one JSON document
// out (Prometheus text for `metrics`). Every command that changes something
// is recorded in the event log and the log.
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "common/key_codec.h"
#include "common/logging.h"
#include "common/version.h"
#include "coordinator/coordinator.h"

namespace ferry {
namespace {

constexpr size_t kMaxCommandBytes = 4096;

std::string ErrorJson(const std::string& message) {
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false,
                                                 nlohmann::json::error_handler_t::replace);
}

const char* kHelp =
    "status | ranges [pending|leased|done|failed|stalled] | workers | metrics | pause | resume | "
    "throttle <rows/s|off> | drain <worker> | revoke <range> | events [n] | help";

}  // namespace

std::string Coordinator::StateName() const {
  if (planning_) return "planning";
  switch (job_.phase) {
    case JobPhase::kComplete:
      return job_.mirrored ? "complete" : "finalizing";
    case JobPhase::kFailed:
      return "failed";
    case JobPhase::kCopying:
      break;
  }
  if (job_.paused) return "paused";
  if (table_.AllDone()) return "finalizing";
  return "copying";
}

std::string Coordinator::HandleCommand(const std::string& line) {
  if (line.size() > kMaxCommandBytes) {
    metrics_.status_errors++;
    return ErrorJson(fmt::format("command of {} bytes is too long (limit {}); try 'help'",
                                 line.size(), kMaxCommandBytes));
  }
  std::istringstream in(line);
  std::string cmd, arg, extra;
  in >> cmd >> arg >> extra;
  int64_t now = clock_->NowMs();
  auto bad = [&](const std::string& m) {
    metrics_.status_errors++;
    return ErrorJson(m);
  };
  if (!extra.empty()) return bad("too many arguments; try 'help'");
  if (cmd == "status" && arg.empty()) {
    return StatusFields().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  if (cmd == "ranges") return RangesJson(arg);
  if (cmd == "workers" && arg.empty()) return WorkersJson();
  if (cmd == "metrics" && arg.empty()) return MetricsText();
  if (cmd == "help" && arg.empty()) {
    return nlohmann::json{{"commands", kHelp}, {"version", kFerryVersion}}.dump();
  }
  if ((cmd == "pause" || cmd == "resume") && arg.empty()) {
    bool pause = cmd == "pause";
    if (job_.paused != pause) {
      job_.paused = pause;
      job_dirty_ = true;
      Record(Event{now, cmd, 0, 0, "", "operator"});
    }
    return nlohmann::json{{"ok", true}, {"paused", job_.paused}}.dump();
  }
  if (cmd == "throttle") {
    uint64_t rate = 0;
    if (arg != "off") {
      try {
        size_t used = 0;
        long long v = std::stoll(arg, &used);
        if (used != arg.size() || v <= 0) throw std::invalid_argument("range");
        rate = static_cast<uint64_t>(v);
      } catch (const std::exception&) {
        return bad("throttle takes a positive number of rows per second, or 'off'");
      }
    }
    job_.throttle_rows_per_s = rate;
    job_dirty_ = true;
    Record(Event{now, "throttle", 0, 0, "", rate ? fmt::format("{} rows/s", rate) : "off"});
    return nlohmann::json{{"ok", true}, {"throttle_rows_per_second", rate}}.dump();
  }
  if (cmd == "drain") {
    auto it = workers_.find(arg);
    if (arg.empty() || it == workers_.end())
      return bad("drain takes a registered worker id; see 'workers'");
    it->second.draining = true;
    it->second.row.state = "draining";
    dirty_workers_.push_back(it->second.row);
    Record(Event{now, "drain", it->second.current_range, 0, arg, "operator"});
    return nlohmann::json{{"ok", true}, {"worker", arg}}.dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  if (cmd == "revoke") {
    uint64_t id = 0;
    try {
      size_t used = 0;
      id = std::stoull(arg, &used);
      if (used != arg.size()) throw std::invalid_argument("junk");
    } catch (const std::exception&) {
      return bad("revoke takes a range id; see 'ranges leased'");
    }
    const RangeRecord* r = table_.Find(id);
    std::string owner = r ? r->owner : "";
    uint64_t epoch = r ? r->epoch : 0;
    Status s = table_.Revoke(id);
    if (!s.ok()) return bad(s.message());
    auto it = workers_.find(owner);
    if (it != workers_.end() && it->second.current_range == id) it->second.current_range = 0;
    metrics_.revokes++;
    Record(Event{now, "revoke", id, epoch, owner, "operator"});
    return nlohmann::json{{"ok", true}, {"range", id}, {"fenced_epoch", epoch}}.dump();
  }
  if (cmd == "events") {
    size_t n = 50;
    if (!arg.empty()) {
      try {
        n = std::min<size_t>(1000, std::stoul(arg));
      } catch (const std::exception&) {
        return bad("events takes a count");
      }
    }
    auto events = state_->LoadEvents(n);
    if (!events.ok()) return bad(events.status().message());
    nlohmann::json arr = nlohmann::json::array();
    for (const Event& e : *events) {
      arr.push_back({{"ts_ms", e.ts_ms},
                     {"kind", e.kind},
                     {"range", e.range},
                     {"epoch", e.epoch},
                     {"worker", e.worker},
                     {"detail", e.detail}});
    }
    return nlohmann::json{{"events", arr}}.dump(-1, ' ', false,
                                                nlohmann::json::error_handler_t::replace);
  }
  std::string shown = line.substr(0, 64);
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  }
  return bad(fmt::format("unknown command '{}'; try 'help'", shown));
}

nlohmann::json Coordinator::StatusFields() {
  uint64_t rows = RowsCopied();
  uint64_t est = table_.rows_estimated();
  double rate = 0;
  if (rate_samples_.size() >= 2) {
    auto& [t0, r0] = rate_samples_.front();
    int64_t dt = MonotonicMs() - t0;
    if (dt > 0 && rows >= r0) rate = (rows - r0) * 1000.0 / dt;
  }
  nlohmann::json eta = nullptr;
  if (complete()) {
    eta = 0;
  } else if (rate > 0) {
    eta = static_cast<int64_t>((est > rows ? est - rows : 0) / rate + 0.5);
  }
  int64_t now = clock_->NowMs();
  uint64_t live = 0;
  for (const auto& [id, w] : workers_) {
    live += !w.draining && w.row.state != "gone" && now - w.row.last_seen_ms <= 3 * table_.ttl_ms();
  }
  nlohmann::json j = {
      {"state", StateName()},
      {"from_version", job_.from_version},
      {"to_version", job_.to_version},
      {"current_version", job_.current_version ? nlohmann::json(*job_.current_version) : nullptr},
      {"ranges_total", table_.ranges().size()},
      {"ranges_pending", table_.count(RangeState::kPending)},
      {"ranges_leased", table_.count(RangeState::kLeased)},
      {"ranges_done", table_.count(RangeState::kDone)},
      {"ranges_failed", table_.count(RangeState::kFailed)},
      {"ranges_stalled", table_.CountStalled(opt_.stall_ms)},
      {"rows_copied", rows},
      {"bytes_copied", BytesCopied()},
      {"rows_estimated", est},
      {"rows_per_second", static_cast<int64_t>(rate)},
      {"eta_seconds", eta},
      {"workers_live", live},
      {"boundary", BoundaryToString(job_.boundary)},
      {"paused", job_.paused},
      {"throttle_rows_per_second", job_.throttle_rows_per_s},
      {"failure", job_.failure},
      {"last_error", last_range_error_},
      {"plan_id", job_.plan_id},
      {"last_epoch", table_.last_epoch()},
      {"source", RedactUri(opt_.source_uri)},
      {"target", RedactUri(opt_.target_uri)},
      {"uptime_seconds", (now - started_ms_) / 1000},
      {"version", kFerryVersion},
  };
  return j;
}

std::string Coordinator::RangesJson(const std::string& filter) {
  bool stalled = filter == "stalled";
  std::optional<RangeState> want;
  if (!filter.empty() && !stalled) {
    want = ParseRangeState(filter);
    if (!want) {
      metrics_.status_errors++;
      return ErrorJson("ranges takes one of pending|leased|done|failed|stalled");
    }
  }
  int64_t now = clock_->NowMs();
  nlohmann::json arr = nlohmann::json::array();
  for (const RangeRecord& r : table_.ranges()) {
    if (want && r.state != *want) continue;
    std::string reason;
    if (stalled) {
      if (r.state != RangeState::kLeased || r.StalledForMs(now) < opt_.stall_ms) continue;
      auto it = workers_.find(r.owner);
      bool heard = it != workers_.end() && now - it->second.row.last_seen_ms < opt_.stall_ms;
      reason = !heard ? "no heartbeat"
                      : (r.errors_since_progress ? "repeated write errors"
                                                 : "heartbeats without progress");
    }
    nlohmann::json j = {{"id", r.id},
                        {"table", r.table},
                        {"lo", r.lo.empty() ? "(start)" : KeyToString(r.lo)},
                        {"hi", r.hi.empty() ? "(end)" : KeyToString(r.hi)},
                        {"state", RangeStateName(r.state)},
                        {"owner", r.owner},
                        {"epoch", r.epoch},
                        {"deadline_ms", r.deadline_ms},
                        {"cursor", KeyToString(r.cursor)},
                        {"rows", r.rows},
                        {"bytes", r.bytes},
                        {"attempts", r.attempts},
                        {"errors", r.errors},
                        {"last_error", r.last_error}};
    if (stalled) j["reason"] = reason;
    arr.push_back(std::move(j));
  }
  return nlohmann::json{{"ranges", arr}}.dump(-1, ' ', false,
                                              nlohmann::json::error_handler_t::replace);
}

std::string Coordinator::WorkersJson() {
  int64_t now = clock_->NowMs();
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& [id, w] : workers_) {
    std::string state = w.draining ? "draining" : "active";
    if (w.row.state == "gone" || now - w.row.last_seen_ms > 3 * table_.ttl_ms()) state = "gone";
    arr.push_back({{"id", id},
                   {"host", w.row.host},
                   {"pid", w.row.pid},
                   {"version", w.row.version},
                   {"range", w.current_range},
                   {"rows", w.rows},
                   {"rows_per_second", static_cast<int64_t>(w.rows_per_second)},
                   {"last_heartbeat_ms", w.row.last_seen_ms},
                   {"state", state}});
  }
  return nlohmann::json{{"workers", arr}}.dump(-1, ' ', false,
                                               nlohmann::json::error_handler_t::replace);
}

std::string Coordinator::MetricsText() {
  std::string out;
  const CoordinatorMetrics& m = metrics_;
  RenderCounter("ferry_rows_copied_total", "Rows copied into the new store.", RowsCopied(), &out);
  RenderCounter("ferry_bytes_copied_total", "Key and value bytes copied.", BytesCopied(), &out);
  RenderCounter("ferry_lease_requests_total",
                "Lease requests (a completion that asks for the next range is not counted).",
                m.lease_requests, &out);
  RenderCounter("ferry_grants_total", "Leases granted.", m.grants, &out);
  RenderCounter("ferry_expiries_total", "Leases expired.", m.expiries, &out);
  RenderCounter("ferry_completions_total", "Ranges completed.", m.completions, &out);
  RenderCounter("ferry_releases_total", "Leases released by workers.", m.releases, &out);
  RenderCounter("ferry_revokes_total", "Leases revoked by operators.", m.revokes, &out);
  RenderCounter("ferry_lease_lost_total", "Messages rejected with lease lost.", m.lease_lost, &out);
  RenderCounter("ferry_malformed_messages_total", "Malformed worker messages.", m.malformed, &out);
  RenderCounter("ferry_protocol_mismatch_total", "Messages with another protocol version.",
                m.version_mismatch, &out);
  RenderCounter("ferry_range_errors_total", "Copy errors reported by workers.", m.range_errors,
                &out);
  RenderCounter("ferry_state_commits_total", "State transactions committed.", m.commits, &out);
  RenderCounter("ferry_state_commit_failures_total", "State transactions that failed.",
                m.commit_failures, &out);
  RenderCounter("ferry_status_requests_total", "Status socket requests.", m.status_requests, &out);
  RenderCounter("ferry_auth_rejected_total",
                "CURVE handshakes refused (the worker's key is not in --curve-allow-file).",
                m.auth_rejected, &out);
  out += "# HELP ferry_ranges Ranges by state.\n# TYPE ferry_ranges gauge\n";
  for (RangeState s :
       {RangeState::kPending, RangeState::kLeased, RangeState::kDone, RangeState::kFailed}) {
    out += fmt::format("ferry_ranges{{state=\"{}\"}} {}\n", RangeStateName(s), table_.count(s));
  }
  int64_t now = clock_->NowMs();
  uint64_t live = 0;
  for (const auto& [id, w] : workers_) live += now - w.row.last_seen_ms <= 3 * table_.ttl_ms();
  RenderGauge("ferry_workers_live", "Workers heard from within three lease TTLs.", live, &out);
  RenderGauge("ferry_ranges_stalled",
              "Leased ranges whose cursor has not moved for --stall-after of leased time.",
              static_cast<double>(table_.CountStalled(opt_.stall_ms)), &out);
  RenderGauge("ferry_lease_requests_waiting",
              "Lease requests held until a range comes free or the job ends (at most 1 s).",
              static_cast<double>(waiting_.size()), &out);
  double progress = table_.ranges().empty() ? 1.0
                                            : static_cast<double>(table_.done_prefix()) /
                                                  static_cast<double>(table_.ranges().size());
  RenderGauge("ferry_boundary_progress_ratio", "Share of ranges inside the committed boundary.",
              progress, &out);
  RenderGauge("ferry_data_version", "Data version of the new store as the coordinator knows it.",
              job_.current_version ? static_cast<double>(*job_.current_version) : 0, &out);
  RenderGauge("ferry_paused", "1 while paused.", job_.paused ? 1 : 0, &out);
  m.progress_rows.Render("ferry_progress_batch_rows", "Rows committed per worker heartbeat.", &out);
  m.commit_seconds.Render("ferry_state_commit_seconds", "Latency of one state group commit.", &out);
  return out;
}

}  // namespace ferry
