#include "coordinator/online_phase.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/logging.h"
#include "coordinator/metrics.h"

namespace ferry {
namespace {

constexpr int kFreezeWaitMs = 20;         // lock wait per pass (the loop must not block)
constexpr int64_t kFreshReportMs = 3000;  // an applier report this recent speaks for the backlog
constexpr int64_t kAutoRetryMs = 5000;    // --auto-cutover: after a failed attempt
constexpr uint64_t kProbeLimit = 10000;   // PostgreSQL: changes decoded per probe at most

std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

OnlinePhase::OnlinePhase(std::unique_ptr<ChangeCapture> capture, LeaseService* service,
                         const Clock* clock, OnlineSettings settings)
    : capture_(std::move(capture)),
      service_(service),
      clock_(clock),
      settings_(std::move(settings)) {
  // Counting a SQLite backlog is two indexed reads; a PostgreSQL probe decodes.
  probe_every_ms_ = capture_->Describe().rfind("sqlite:", 0) == 0 ? 1000 : 5000;
}

OnlinePhase::~OnlinePhase() {
  if (capture_ && capture_->frozen()) capture_->Thaw();
}

void OnlinePhase::Start(const ChangePosition& recorded) {
  service_->SeedApplier(recorded.position, recorded.applied);
  if (service_->job().phase == JobPhase::kComplete) {
    service_->SetFinishing(true);
    cut_ = Cut::kRemoving;
  }
}

void OnlinePhase::Step() {
  const JobMeta& job = service_->job();
  const int64_t now = clock_->NowMs();
  if ((cut_ == Cut::kWaitLag || cut_ == Cut::kFrozen) && job.phase != JobPhase::kCuttingOver) {
    // A failed state commit put the job back where the state holds it.
    Abort("the coordinator's state commit failed; cut-over abandoned", false);
    return;
  }
  switch (job.phase) {
    case JobPhase::kCopying:
      MaybeProbe(now);
      break;
    case JobPhase::kCatchingUp: {
      MaybeProbe(now);
      std::string why;
      if (settings_.auto_cutover && cut_ == Cut::kIdle && now >= next_auto_ms_ &&
          GateOpen(now, &why)) {
        const std::string answer = Cutover("");
        LogEvent(spdlog::level::info, "auto_cutover", {{"answer", answer}});
      }
      break;
    }
    case JobPhase::kCuttingOver:
      DriveCutover(now);
      break;
    case JobPhase::kComplete:
      if (service_->finishing()) RemoveCapture(now);
      break;
    case JobPhase::kFailed:
      break;
  }
}

std::string OnlinePhase::Cutover(const std::string& arg) {
  int64_t timeout_ms = 0;
  if (!arg.empty()) {
    char* end = nullptr;
    const double secs = std::strtod(arg.c_str(), &end);
    if (end != arg.c_str() + arg.size() || !(secs >= 0) || secs > 1e7) {
      return Dump({{"error", "cutover takes an optional timeout in seconds (0 = none)"}});
    }
    timeout_ms = static_cast<int64_t>(secs * 1000);
  }
  const JobMeta& job = service_->job();
  switch (job.phase) {
    case JobPhase::kComplete:
      return Dump({{"ok", true}, {"state", "complete"}, {"attempt", attempt_}});
    case JobPhase::kCuttingOver:
      return Dump({{"ok", true}, {"state", "cutting_over"}, {"attempt", attempt_}});
    case JobPhase::kFailed:
      return Dump({{"error", "cutover: the migration failed (" + job.failure + ")"}});
    case JobPhase::kCopying: {
      const LeaseTable& t = service_->table();
      return Dump({{"error", fmt::format("cutover: the migration is still copying ({} of {} "
                                         "ranges copied); a cut-over is possible once it is "
                                         "catching_up (every range copied)",
                                         t.count(RangeState::kDone), t.ranges().size())},
                   {"state", "copying"}});
    }
    case JobPhase::kCatchingUp:
      break;
  }
  const uint64_t attempt = attempt_ + 1;
  Status s = service_->BeginCutover(fmt::format(
      "cut-over {} requested{}", attempt,
      timeout_ms ? fmt::format(" (timeout {:.1f} s)", timeout_ms / 1000.0) : std::string()));
  if (!s.ok()) return Dump({{"error", "cutover: " + s.message()}});
  attempt_ = attempt;
  deadline_ms_ = timeout_ms ? clock_->NowMs() + timeout_ms : 0;
  cut_ = Cut::kWaitLag;
  result_ = "running";
  error_.clear();
  return Dump({{"ok", true}, {"state", "cutting_over"}, {"attempt", attempt_}});
}

bool OnlinePhase::GateOpen(int64_t now, std::string* why) const {
  const ApplierLease& a = service_->applier();
  if (!a.held()) {
    *why = "no change applier holds the lease yet (is a worker running?)";
    return false;
  }
  const ApplierLease::Progress& p = a.progress();
  if (p.reported_ms == 0 || now - p.reported_ms > kFreshReportMs) {
    *why = "waiting for the change applier's report";
    return false;
  }
  if (!p.error.empty()) {
    *why = "the change applier's last batch failed: " + p.error;
    return false;
  }
  const int64_t lag = p.oldest_pending_ms > 0 ? now - p.oldest_pending_ms : 0;
  if (lag > settings_.max_lag_ms) {
    *why = fmt::format("the oldest unapplied change is {:.1f} s old (--cutover-max-lag {:.1f} s)",
                       lag / 1000.0, settings_.max_lag_ms / 1000.0);
    return false;
  }
  return true;
}

void OnlinePhase::DriveCutover(int64_t now) {
  if (cut_ == Cut::kIdle || cut_ == Cut::kDone) {
    // Loaded in cutting_over (a restart or a takeover): did the previous
    // coordinator commit the guard?
    auto st = capture_->Inspect();
    if (!st.ok()) {
      LogEvent(spdlog::level::warn, "cutover_inspect_failed", {{"error", st.status().message()}});
      return;
    }
    const bool guarded = !st->guarded.empty() && st->captured.empty();
    if (guarded) {
      service_->FinishOnline(
          "the guard was found installed after a restart; the version bump completes the "
          "cut-over");
      result_ = "complete";
      ++completed_;
      cut_ = Cut::kRemoving;
      return;
    }
    ++attempt_;
    deadline_ms_ = now + settings_.resumed_timeout_ms;
    cut_ = Cut::kWaitLag;
    result_ = "running";
    error_.clear();
    service_->Note(Event{now, "cutover_resumed", 0, 0, "",
                         fmt::format("cut-over {} resumed after a coordinator restart", attempt_)});
    return;
  }
  if (cut_ == Cut::kRemoving) {
    // The guard is committed but the bump was undone (a failed state
    // commit reloaded cutting_over): bump again.
    service_->FinishOnline("version bump retried after a failed state commit");
    return;
  }
  if (deadline_ms_ > 0 && now >= deadline_ms_) {
    Abort(fmt::format("timed out ({})", cut_ == Cut::kFrozen
                                            ? "writes were frozen, the applier had not drained"
                                            : "the backlog never got small enough to freeze"),
          true);
    return;
  }
  const ApplierLease& a = service_->applier();
  if (cut_ == Cut::kWaitLag) {
    std::string why;
    if (!GateOpen(now, &why)) return;
    Status f = capture_->Freeze(kFreezeWaitMs);
    if (f.code() == Code::kUnavailable) return;  // a writer holds the lock: next pass
    if (!f.ok()) return Abort("freezing writes failed: " + f.message(), false);
    freeze_start_mono_ = MonotonicMs();
    auto point = capture_->FreezePoint();
    if (!point.ok())
      return Abort("reading the freeze point failed: " + point.status().message(), false);
    freeze_point_ = *point;
    service_->SetDrainTo(freeze_point_);
    LogEvent(spdlog::level::info, "cutover_frozen",
             {{"attempt", attempt_},
              {"freeze_point", freeze_point_},
              {"applied_to", a.progress().caught_up}});
    cut_ = Cut::kFrozen;
  }
  // Frozen: writes to the migrated tables wait.
  const int64_t frozen_ms = MonotonicMs() - freeze_start_mono_;
  if (!a.held()) return Abort("the change applier's lease ended during the freeze", false);
  if (a.progress().caught_up < freeze_point_) {
    if (frozen_ms > settings_.max_freeze_ms) {
      Abort(fmt::format("the change applier did not reach the freeze point (position {}, "
                        "applied to {}) within --cutover-max-freeze {:.1f} s",
                        freeze_point_, a.progress().caught_up, settings_.max_freeze_ms / 1000.0),
            false);
    }
    return;
  }
  Status g = capture_->CommitGuard(settings_.target);
  if (g.code() == Code::kUnavailable) {
    if (frozen_ms > settings_.max_freeze_ms) {
      Abort(fmt::format("committing the guard waited longer than --cutover-max-freeze: {}",
                        g.message()),
            false);
    }
    return;
  }
  if (!g.ok()) return Abort("installing the write-refusal guard failed: " + g.message(), false);
  last_freeze_ms_ = MonotonicMs() - freeze_start_mono_;
  service_->Note(Event{
      now, "cutover_guarded", 0, 0, "",
      fmt::format("legacy writes to {} tables refused from now on; writes were "
                  "frozen {} ms; changes applied to position {}",
                  service_->settings().online_tables.size(), last_freeze_ms_, freeze_point_)});
  service_->FinishOnline(
      fmt::format("cut-over {}: writes frozen {} ms", attempt_, last_freeze_ms_));
  result_ = "complete";
  ++completed_;
  cut_ = Cut::kRemoving;
}

void OnlinePhase::Abort(const std::string& why, bool timed_out) {
  capture_->Thaw();
  service_->CutoverFailed(
      fmt::format("cut-over {}: {}; legacy writes flow again, changes are "
                  "still replayed",
                  attempt_, why));
  result_ = timed_out ? "timed_out" : "failed";
  error_ = why;
  (timed_out ? timed_out_ : failed_)++;
  cut_ = Cut::kIdle;
  next_auto_ms_ = clock_->NowMs() + kAutoRetryMs;
}

void OnlinePhase::RemoveCapture(int64_t now) {
  if (!service_->job().mirrored || now < next_remove_ms_) return;
  Status s = capture_->RemoveCapture();
  if (!s.ok()) {
    ++remove_attempts_;
    next_remove_ms_ = now + 200;
    LogEvent(RetryLevel(remove_attempts_ / 5), "capture_remove_retry",
             {{"error", s.message()}, {"attempt", remove_attempts_}});
    return;
  }
  service_->Note(Event{now, "capture_removed", 0, 0, "",
                       fmt::format("change capture removed from {}; the guard stays (remove it "
                                   "with `ferryctl unguard --source ...`)",
                                   capture_->Describe())});
  service_->SetFinishing(false);
  cut_ = Cut::kDone;
}

void OnlinePhase::MaybeProbe(int64_t now) {
  if (now < next_probe_ms_ || capture_->frozen()) return;
  const ApplierLease& a = service_->applier();
  if (a.held() && a.progress().reported_ms > 0 &&
      now - a.progress().reported_ms <= kFreshReportMs) {
    return;  // the applier's reports speak for the backlog
  }
  next_probe_ms_ = now + probe_every_ms_;
  auto b = capture_->Probe(a.progress().position, kProbeLimit);
  if (!b.ok()) {
    LogEvent(spdlog::level::debug, "backlog_probe_failed", {{"error", b.status().message()}});
    return;
  }
  probe_ = *b;
}

void OnlinePhase::CurrentBacklog(int64_t now, uint64_t* pending, int64_t* oldest_ms) const {
  *pending = 0;
  *oldest_ms = 0;
  const JobPhase phase = service_->job().phase;
  if (phase == JobPhase::kComplete || phase == JobPhase::kFailed) return;
  const ApplierLease& a = service_->applier();
  const ApplierLease::Progress& p = a.progress();
  if (a.held() && p.reported_ms > 0 && now - p.reported_ms <= kFreshReportMs) {
    *pending = p.pending;
    *oldest_ms = p.oldest_pending_ms;
    return;
  }
  *pending = probe_.pending;
  *oldest_ms = probe_.oldest_ms;
}

void OnlinePhase::AddStatus(nlohmann::json* st) const {
  const int64_t now = clock_->NowMs();
  uint64_t pending = 0;
  int64_t oldest = 0;
  CurrentBacklog(now, &pending, &oldest);
  const ApplierLease& a = service_->applier();
  const double lag = oldest > 0 ? std::max<int64_t>(0, now - oldest) / 1000.0 : 0.0;
  (*st)["online"] = true;
  (*st)["changes_pending"] = pending;
  (*st)["changes_applied"] = a.progress().applied;
  (*st)["lag_seconds"] = std::round(lag * 10) / 10;
  (*st)["cutover_freeze_ms"] =
      last_freeze_ms_ >= 0 ? nlohmann::json(last_freeze_ms_) : nlohmann::json(nullptr);
  (*st)["cutover_attempt"] = attempt_;
  (*st)["cutover_result"] = result_;
  (*st)["cutover_error"] = error_;
  (*st)["applier"] = a.owner();
  (*st)["change_position"] = a.progress().position;
}

void OnlinePhase::AddMetrics(std::string* out) const {
  const int64_t now = clock_->NowMs();
  uint64_t pending = 0;
  int64_t oldest = 0;
  CurrentBacklog(now, &pending, &oldest);
  RenderGauge("ferry_changes_pending",
              "Changes captured on the legacy store and not applied to the new store yet.",
              static_cast<double>(pending), out);
  RenderCounter("ferry_changes_applied_total", "Captured changes applied to the new store.",
                service_->applier().progress().applied, out);
  RenderGauge("ferry_change_lag_seconds", "Age of the oldest change not applied yet.",
              oldest > 0 ? std::max<int64_t>(0, now - oldest) / 1000.0 : 0.0, out);
  RenderGauge("ferry_cutover_freeze_seconds",
              "How long the completed cut-over froze legacy writes (0 before it).",
              last_freeze_ms_ > 0 ? last_freeze_ms_ / 1000.0 : 0.0, out);
  *out +=
      "# HELP ferry_cutovers_total Cut-over attempts by result.\n# TYPE ferry_cutovers_total "
      "counter\n";
  *out += fmt::format("ferry_cutovers_total{{result=\"complete\"}} {}\n", completed_);
  *out += fmt::format("ferry_cutovers_total{{result=\"failed\"}} {}\n", failed_);
  *out += fmt::format("ferry_cutovers_total{{result=\"timed_out\"}} {}\n", timed_out_);
}

std::unique_ptr<OnlinePhase> OpenOnlinePhase(const CoordinatorOptions& opt, OpenedJob* job,
                                             LeaseService* service, Store* target,
                                             const Clock* clock) {
  OnlineSettings settings;
  settings.auto_cutover = opt.auto_cutover;
  settings.max_lag_ms = opt.cutover_max_lag_ms;
  settings.max_freeze_ms = opt.cutover_max_freeze_ms;
  settings.target = RedactUri(opt.target_uri);
  auto phase = std::make_unique<OnlinePhase>(std::move(job->capture), service, clock, settings);
  ChangePosition recorded;
  auto p = target->ReadChangePosition(service->job().plan_id);
  if (p.ok()) {
    recorded = *p;
  } else {
    LogEvent(spdlog::level::warn, "change_position_unknown",
             {{"error", p.status().message()},
              {"effect", "status shows 0 changes applied until the applier reports"}});
  }
  phase->Start(recorded);
  return phase;
}

}  // namespace ferry
