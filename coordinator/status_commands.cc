#include "coordinator/status_commands.h"

#include <fmt/format.h>

#include <sstream>

#include "common/key_codec.h"
#include "common/version.h"
#include "coordinator/online_phase.h"
#include "coordinator/ranges_json.h"

namespace ferry {
namespace {

constexpr size_t kMaxCommandBytes = 4096;

const char* kHelp =
    "status | ranges [pending|leased|done|failed|stalled] | workers | metrics | pause | resume | "
    "throttle <rows/s|off> | drain <worker> | revoke <range> | events [n] | cutover [seconds] | "
    "help";

std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string ErrorJson(const std::string& message) {
  return Dump(nlohmann::json{{"error", message}});
}

bool StatusCommands::IsReadOnly(const std::string& line) {
  std::istringstream in(line);
  std::string cmd;
  in >> cmd;
  return cmd == "status" || cmd == "ranges" || cmd == "workers" || cmd == "metrics" ||
         cmd == "events" || cmd == "help";
}

std::string StatusCommands::StateName() const {
  const JobMeta& job = service_->job();
  switch (job.phase) {
    case JobPhase::kComplete:
      // Online mode: complete once the capture is removed too.
      return job.mirrored && !service_->finishing() ? "complete" : "finalizing";
    case JobPhase::kFailed:
      return "failed";
    case JobPhase::kCatchingUp:
      return "catching_up";
    case JobPhase::kCuttingOver:
      return "cutting_over";
    case JobPhase::kCopying:
      break;
  }
  if (job.paused) return "paused";
  const LeaseTable& t = service_->table();
  if (t.Finished()) return "finalizing";
  // Every range copied; verify leases (and ranges waiting for one) remain.
  if (job.verify && t.count(RangeState::kDone) + t.verify_leased() == t.ranges().size()) {
    return "verifying";
  }
  return "copying";
}

std::string StatusCommands::Handle(const std::string& line) {
  if (line.size() > kMaxCommandBytes) {
    return ErrorJson(fmt::format("command of {} bytes is too long (limit {}); try 'help'",
                                 line.size(), kMaxCommandBytes));
  }
  std::istringstream in(line);
  std::string cmd, arg, extra;
  in >> cmd >> arg >> extra;
  if (!extra.empty()) return ErrorJson("too many arguments; try 'help'");
  if (cmd == "status" && arg.empty()) return Dump(StatusFields());
  if (cmd == "ranges") return RangesJson(arg);
  if (cmd == "workers" && arg.empty()) return WorkersJson();
  if (cmd == "metrics" && arg.empty()) return MetricsText();
  if (cmd == "events") return EventsJson(arg);
  if (cmd == "help" && arg.empty()) {
    return nlohmann::json{{"commands", kHelp}, {"version", kFerryVersion}}.dump();
  }
  if ((cmd == "pause" || cmd == "resume") && arg.empty()) {
    service_->SetPaused(cmd == "pause");
    return nlohmann::json{{"ok", true}, {"paused", service_->job().paused}}.dump();
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
        return ErrorJson("throttle takes a positive number of rows per second, or 'off'");
      }
    }
    service_->SetThrottle(rate);
    return nlohmann::json{{"ok", true}, {"throttle_rows_per_second", rate}}.dump();
  }
  if (cmd == "drain") {
    Status s = service_->Drain(arg);
    if (!s.ok()) return ErrorJson(s.message());
    return Dump(nlohmann::json{{"ok", true}, {"worker", arg}});
  }
  if (cmd == "cutover") {
    if (!ctx_.online) {
      return ErrorJson(
          "cutover: this migration is not online (start the coordinator with --online to migrate "
          "while the legacy store takes writes)");
    }
    return ctx_.online->Cutover(arg);
  }
  if (cmd == "revoke") {
    uint64_t id = 0;
    try {
      size_t used = 0;
      id = std::stoull(arg, &used);
      if (used != arg.size()) throw std::invalid_argument("junk");
    } catch (const std::exception&) {
      return ErrorJson("revoke takes a range id; see 'ranges leased'");
    }
    auto epoch = service_->Revoke(id);
    if (!epoch.ok()) return ErrorJson(epoch.status().message());
    return nlohmann::json{{"ok", true}, {"range", id}, {"fenced_epoch", *epoch}}.dump();
  }
  std::string shown = line.substr(0, 64);
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  }
  return ErrorJson(fmt::format("unknown command '{}'; try 'help'", shown));
}

nlohmann::json StatusCommands::StatusFields() const {
  const LeaseTable& table = service_->table();
  const JobMeta& job = service_->job();
  const uint64_t rows = table.rows_total();
  const uint64_t est = table.rows_estimated();
  const double rate = service_->RowsPerSecond();
  nlohmann::json eta = nullptr;
  if (service_->complete()) {
    eta = 0;
  } else if (rate > 0) {
    eta = static_cast<int64_t>((est > rows ? est - rows : 0) / rate + 0.5);
  }
  nlohmann::json out = {
      {"state", StateName()},
      {"from_version", job.from_version},
      {"to_version", job.to_version},
      {"current_version", job.current_version ? nlohmann::json(*job.current_version) : nullptr},
      {"ranges_total", table.ranges().size()},
      {"ranges_pending", table.count(RangeState::kPending)},
      {"ranges_leased", table.count(RangeState::kLeased)},
      {"ranges_done", table.count(RangeState::kDone)},
      {"ranges_failed", table.count(RangeState::kFailed)},
      {"ranges_stalled", table.CountStalled(ctx_.stall_ms)},
      {"rows_copied", rows},
      {"rows_rejected", table.rejected_total()},
      {"bytes_copied", table.bytes_total()},
      {"rows_estimated", est},
      {"rows_per_second", static_cast<int64_t>(rate)},
      {"eta_seconds", eta},
      {"workers_live", service_->workers().CountLive()},
      {"verify", job.verify},
      {"ranges_verified", table.verified()},
      {"rows_repaired", table.rows_repaired()},
      {"boundary", BoundaryToString(job.boundary)},
      {"paused", job.paused},
      {"throttle_rows_per_second", job.throttle_rows_per_s},
      {"failure", job.failure},
      {"last_error", ctx_.state_error && !ctx_.state_error->empty() ? "state: " + *ctx_.state_error
                                                                    : service_->last_range_error()},
      {"plan_id", job.plan_id},
      {"last_epoch", table.last_epoch()},
      {"source", ctx_.source},
      {"target", ctx_.target},
      {"uptime_seconds", (clock_->NowMs() - ctx_.started_ms) / 1000},
      {"version", kFerryVersion},
  };
  if (ctx_.online) ctx_.online->AddStatus(&out);
  return out;
}

std::string StatusCommands::RangesJson(const std::string& filter) const {
  const bool stalled = filter == "stalled";
  std::optional<RangeState> want;
  if (!filter.empty() && !stalled) {
    want = ParseRangeState(filter);
    if (!want) return ErrorJson("ranges takes one of pending|leased|done|failed|stalled");
  }
  const int64_t now = clock_->NowMs();
  const WorkerRegistry& workers = service_->workers();
  RangesJsonWriter out;  // streamed: no json tree for a 100,000-range plan
  const LeaseTable& table = service_->table();
  for (uint64_t id : table.order()) {  // key order, each table's ranges together
    const RangeRecord& r = *table.Find(id);
    if (want && r.state != *want) continue;
    std::string reason;
    if (stalled) {
      if (r.state != RangeState::kLeased || r.StalledForMs(now) < ctx_.stall_ms) continue;
      const WorkerInfo* w = workers.Find(r.owner);
      const bool heard = w && now - w->row.last_seen_ms < ctx_.stall_ms;
      reason = !heard ? "no heartbeat"
                      : (r.errors_since_progress ? "repeated write errors"
                                                 : "heartbeats without progress");
    }
    out.Add(r, stalled ? &reason : nullptr);
  }
  return out.Finish();
}

std::string StatusCommands::WorkersJson() const {
  const WorkerRegistry& workers = service_->workers();
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& [id, w] : workers.all()) {
    arr.push_back({{"id", id},
                   {"host", w.row.host},
                   {"pid", w.row.pid},
                   {"version", w.row.version},
                   {"range", w.current_range},
                   {"rows", w.rows},
                   {"rows_per_second", static_cast<int64_t>(w.rows_per_second)},
                   {"last_heartbeat_ms", w.row.last_seen_ms},
                   {"state", workers.StateOf(w)}});
  }
  return Dump(nlohmann::json{{"workers", std::move(arr)}});
}

std::string StatusCommands::EventsJson(const std::string& arg) const {
  size_t n = 50;
  if (!arg.empty()) {
    try {
      n = std::min<size_t>(1000, std::stoul(arg));
    } catch (const std::exception&) {
      return ErrorJson("events takes a count");
    }
  }
  auto events = state_->LoadEvents(n);
  if (!events.ok()) return ErrorJson(events.status().message());
  nlohmann::json arr = nlohmann::json::array();
  for (const Event& e : *events) {
    arr.push_back({{"ts_ms", e.ts_ms},
                   {"kind", e.kind},
                   {"range", e.range},
                   {"epoch", e.epoch},
                   {"worker", e.worker},
                   {"detail", e.detail}});
  }
  return Dump(nlohmann::json{{"events", std::move(arr)}});
}

std::string StatusCommands::MetricsText() const {
  std::string out;
  const LeaseTable& table = service_->table();
  const LeaseMetrics& m = service_->metrics();
  const ServerMetrics& s = *ctx_.server;
  const JobMeta& job = service_->job();
  RenderCounter("ferry_rows_copied_total", "Rows copied into the new store.", table.rows_total(),
                &out);
  RenderCounter("ferry_rows_rejected_total",
                "Rows a migration spec could not move (recorded in __ferry_rejects).",
                table.rejected_total(), &out);
  RenderCounter("ferry_bytes_copied_total", "Key and value bytes copied.", table.bytes_total(),
                &out);
  RenderCounter("ferry_lease_requests_total",
                "Lease requests (a completion that asks for the next range is not counted).",
                m.lease_requests, &out);
  RenderCounter("ferry_grants_total", "Leases granted.", m.grants, &out);
  RenderCounter("ferry_expiries_total", "Leases expired.", m.expiries, &out);
  RenderCounter("ferry_completions_total", "Ranges completed.", m.completions, &out);
  RenderCounter("ferry_releases_total", "Leases released by workers.", m.releases, &out);
  RenderCounter("ferry_revokes_total", "Leases revoked by operators.", m.revokes, &out);
  RenderCounter("ferry_lease_lost_total", "Messages rejected with lease lost.", m.lease_lost, &out);
  RenderCounter("ferry_malformed_messages_total", "Malformed worker messages.", s.malformed, &out);
  RenderCounter("ferry_protocol_mismatch_total", "Messages with another protocol version.",
                s.version_mismatch, &out);
  RenderCounter("ferry_range_errors_total", "Copy errors reported by workers.", m.range_errors,
                &out);
  RenderCounter("ferry_splits_total", "Leased ranges split in flight.", m.splits, &out);
  RenderCounter("ferry_split_asks_total", "Owners asked to split their range.", m.split_asks, &out);
  RenderCounter("ferry_verify_completions_total", "Ranges verified (--verify).",
                m.verify_completions, &out);
  RenderCounter("ferry_rows_repaired_total", "Rows re-copied or deleted by verification.",
                table.rows_repaired(), &out);
  RenderCounter("ferry_state_commits_total", "State transactions committed.", s.commits, &out);
  RenderCounter("ferry_state_commit_failures_total", "State transactions that failed.",
                s.commit_failures, &out);
  RenderCounter("ferry_status_requests_total", "Status socket requests.", s.status_requests, &out);
  RenderCounter("ferry_auth_rejected_total",
                "CURVE handshakes refused (the worker's key is not in --curve-allow-file).",
                s.auth_rejected, &out);
  out += "# HELP ferry_ranges Ranges by state.\n# TYPE ferry_ranges gauge\n";
  for (RangeState st :
       {RangeState::kPending, RangeState::kLeased, RangeState::kDone, RangeState::kFailed}) {
    out += fmt::format("ferry_ranges{{state=\"{}\"}} {}\n", RangeStateName(st), table.count(st));
  }
  RenderGauge("ferry_workers_live",
              "Workers neither gone nor draining, heard from within the liveness window.",
              static_cast<double>(service_->workers().CountLive()), &out);
  RenderGauge("ferry_ranges_stalled",
              "Leased ranges whose cursor has not moved for --stall-after of leased time.",
              static_cast<double>(table.CountStalled(ctx_.stall_ms)), &out);
  RenderGauge("ferry_lease_requests_waiting",
              "Lease requests held until a range comes free or the job ends (at most 1 s).",
              static_cast<double>(service_->waiting()), &out);
  const double progress = table.ranges().empty() ? 1.0
                                                 : static_cast<double>(table.done_prefix()) /
                                                       static_cast<double>(table.ranges().size());
  RenderGauge("ferry_boundary_progress_ratio", "Share of ranges inside the committed boundary.",
              progress, &out);
  RenderGauge("ferry_data_version", "Data version of the new store as the coordinator knows it.",
              job.current_version ? static_cast<double>(*job.current_version) : 0, &out);
  RenderGauge("ferry_paused", "1 while paused.", job.paused ? 1 : 0, &out);
  RenderGauge("ferry_ranges_verified", "Ranges verified (--verify).",
              static_cast<double>(table.verified()), &out);
  m.progress_rows.Render("ferry_progress_batch_rows", "Rows committed per worker heartbeat.", &out);
  s.commit_seconds.Render("ferry_state_commit_seconds", "Latency of one state group commit.", &out);
  if (ctx_.online) ctx_.online->AddMetrics(&out);
  return out;
}

}  // namespace ferry
