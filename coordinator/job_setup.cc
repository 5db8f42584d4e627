#include "coordinator/job_setup.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <random>

#include "common/clock.h"
#include "common/logging.h"
#include "coordinator/planner.h"
#include "coordinator/version_check.h"
#include "spec/replay_plan.h"

namespace ferry {
namespace {

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

Status CheckJobMatches(const CoordinatorOptions& opt, const JobMeta& stored) {
  auto differ = [](const char* what, const std::string& was, const std::string& now) {
    return InvalidArgument(
        fmt::format("{} is '{}' but the state file was started with '{}': pass "
                    "the same arguments, or use a new --state",
                    what, now, was));
  };
  if (stored.source_uri != RedactUri(opt.source_uri)) {
    return differ("--source", stored.source_uri, RedactUri(opt.source_uri));
  }
  if (stored.target_uri != RedactUri(opt.target_uri)) {
    return differ("--target", stored.target_uri, RedactUri(opt.target_uri));
  }
  if (stored.from_version != opt.from_version || stored.to_version != opt.to_version) {
    return InvalidArgument(fmt::format(
        "versions are {} -> {} but the state file was started with {} -> {}: pass the same "
        "--from-version/--to-version, or use a new --state",
        opt.from_version, opt.to_version, stored.from_version, stored.to_version));
  }
  if (stored.tables != opt.tables) return differ("--tables", stored.tables, opt.tables);
  if (stored.spec_digest.empty() && opt.spec) {
    return InvalidArgument(fmt::format(
        "--spec {} is given but the state file was started without a spec: pass the same "
        "arguments, or use a new --state",
        opt.spec->file));
  }
  if (!stored.spec_digest.empty() && !opt.spec) {
    return InvalidArgument(fmt::format(
        "the state file was started with a migration spec (digest {}); pass the same --spec, or "
        "use a new --state",
        stored.spec_digest));
  }
  if (opt.spec && opt.spec->Digest() != stored.spec_digest) {
    MigrationSpec recorded;
    Status parsed = ParseSpecText(stored.spec_text, "the recorded spec", &recorded);
    const std::string diff = parsed.ok() ? SpecDifference(recorded, *opt.spec)
                                         : "the recorded spec cannot be read: " + parsed.message();
    return InvalidArgument(fmt::format(
        "--spec {} is not the spec the state file was started with: {} (recorded value first); "
        "pass the same spec, or use a new --state",
        opt.spec->file, diff));
  }
  return Status::Ok();
}

ServiceSettings ServiceSettingsFor(const CoordinatorOptions& opt, const LeasePolicy& policy) {
  ServiceSettings s;
  s.source_uri = opt.source_uri;
  s.target_uri = opt.target_uri;
  s.batch_rows = opt.batch_rows;
  s.policy = policy;
  s.max_attempts = opt.max_attempts;
  s.max_rejects = opt.max_rejects;
  s.online = opt.online;
  s.batch_time_ms = opt.batch_time_ms;
  s.force_split_interval_ms = opt.force_split_interval_ms;
  s.split.min_rows = std::max<uint64_t>(1000, 2 * uint64_t{opt.batch_rows});
  return s;
}

Status ValidateFlags(const CoordinatorOptions& opt) {
  FERRY_RETURN_IF_ERROR(ValidateVersionFlags(opt.from_version, opt.to_version));
  if (opt.lease_ttl_ms < 100) return InvalidArgument("--lease-ttl must be at least 0.1 seconds");
  if (opt.range_rows == 0) return InvalidArgument("--range-rows must be at least 1");
  if (opt.batch_rows == 0) return InvalidArgument("--batch-rows must be at least 1");
  if (opt.force_split_interval_ms < 0) {
    return InvalidArgument("--force-split-interval-ms must be 0 (off) or positive");
  }
  if (opt.state_path.empty()) return InvalidArgument("--state is required");
  if (opt.verify && opt.online) {
    // Verification checks ranges against a legacy store that no longer
    // changes; online, the rows keep changing until the cut-over.
    return InvalidArgument(
        "--verify and --online cannot be combined yet: run the online migration without "
        "--verify and check the result after the cut-over with `ferryctl verify`");
  }
  if (opt.auto_cutover && !opt.online) {
    return InvalidArgument("--auto-cutover needs --online (it cuts an online migration over)");
  }
  if (opt.online && (opt.cutover_max_lag_ms < 0 || opt.cutover_max_freeze_ms < 100)) {
    return InvalidArgument(
        "--cutover-max-lag must be at least 0 and --cutover-max-freeze at least 0.1 seconds");
  }
  if (opt.spec && !opt.tables.empty()) {
    return InvalidArgument(
        "--tables and --spec do not go together: with a spec, exactly the tables it lists are "
        "moved");
  }
  return Status::Ok();
}

Result<std::vector<TargetPlan>> ResolveJobTargets(const CoordinatorOptions& opt, Store& source,
                                                  const std::string& tables) {
  FERRY_ASSIGN_OR_RETURN(std::vector<TableSchema> all, source.ListTables());
  if (opt.spec) return ResolveTargets(&*opt.spec, source, all, {}, opt.target_uri);
  FERRY_ASSIGN_OR_RETURN(std::vector<TableSchema> selected, SelectTables(all, tables));
  return ResolveTargets(nullptr, source, all, selected, opt.target_uri);
}

Status CheckSpecAgainstStores(const CoordinatorOptions& opt) {
  if (!opt.spec) return Status::Ok();
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<Store> source,
                         OpenStore(opt.source_uri, StoreRole::kSource));
  return ResolveJobTargets(opt, *source, "").status();
}

namespace {

// Opens the new store, creates the schema and records the plan id in it
// (new job and resume alike), before any range is leased.
Status PrepareTarget(const CoordinatorOptions& opt, OpenedJob* j) {
  FERRY_ASSIGN_OR_RETURN(j->target, OpenStore(opt.target_uri, StoreRole::kTarget));
  std::vector<TableSchema> tables;
  for (const TargetPlan& t : j->targets) tables.push_back(t.target);
  FERRY_RETURN_IF_ERROR(j->target->CreateSchema(tables));
  if (opt.spec) FERRY_RETURN_IF_ERROR(j->target->CreateRejectsTable());
  // Workers check it before writing (Store::RecordPlan).
  return j->target->RecordPlan(j->job.plan_id);
}

// --verify reads the new store back: refuse at start, in one line, when it
// cannot (a role allowed to write but not to read, a table it cannot see).
Status CheckReadBack(const OpenedJob& j) {
  auto listed = j.target->ListTables();
  if (!listed.ok()) {
    return InvalidArgument(fmt::format(
        "--verify reads the new store {} back, but it cannot be listed: {} (grant read access "
        "to it, or run without --verify)",
        j.target->Describe(), listed.status().message()));
  }
  for (const TargetPlan& plan : j.targets) {
    const TableSchema& want = plan.target;
    const TableSchema* have = nullptr;
    for (const TableSchema& t : *listed) {
      if (t.name == want.name) have = &t;
    }
    Status s =
        have ? Status::Ok() : NotFound(fmt::format("table {} is not visible in it", want.name));
    RowBatch batch;
    if (s.ok()) s = j.target->ReadBatch(*have, KeyRange{want.name, "", ""}, "", 1, 1 << 20, &batch);
    if (!s.ok()) {
      return InvalidArgument(fmt::format(
          "--verify reads the new store {} back, but table {} cannot be read: {} (grant read "
          "access (SELECT) on it, or run without --verify)",
          j.target->Describe(), want.name, s.message()));
    }
  }
  return Status::Ok();
}

// --online: the change capture on the legacy store, before planning. A new
// job installs it (after checking that every table can be captured, so a
// refusal installs nothing); a resumed job must find it (or, in a cut-over,
// the guard that replaced it).
Status PrepareCapture(const CoordinatorOptions& opt, const std::optional<JobMeta>& stored,
                      OpenedJob* j) {
  for (const TargetPlan& t : j->targets) FERRY_RETURN_IF_ERROR(CheckReplayable(t));
  const std::vector<TableSchema> captured = CapturedTables(j->targets);
  FERRY_ASSIGN_OR_RETURN(j->capture, OpenChangeCapture(opt.source_uri));
  j->capture->SetTables(captured);
  const JobPhase phase = stored ? stored->phase : JobPhase::kCopying;
  if (!stored) {
    FERRY_RETURN_IF_ERROR(j->capture->Check());
    FERRY_RETURN_IF_ERROR(j->capture->Install());
    LogEvent(spdlog::level::info, "capture_installed",
             {{"source", j->capture->Describe()}, {"tables", captured.size()}});
    return Status::Ok();
  }
  if (phase == JobPhase::kComplete || phase == JobPhase::kFailed) return Status::Ok();
  FERRY_ASSIGN_OR_RETURN(CaptureState st, j->capture->Inspect());
  const bool guarded = !st.guarded.empty() && st.captured.empty();
  if (!st.capture && !(phase == JobPhase::kCuttingOver && guarded)) {
    return FailedPrecondition(fmt::format(
        "the legacy store {} no longer has this online migration's change capture (was it removed "
        "with `ferryctl unguard`?): changes made since cannot be replayed; start over with a new "
        "--state and an empty new store",
        j->capture->Describe()));
  }
  return Status::Ok();
}

}  // namespace

Result<OpenedJob> OpenJob(const CoordinatorOptions& opt, StateStore* state, bool serve_done) {
  FERRY_RETURN_IF_ERROR(ValidateFlags(opt));
  OpenedJob j;
  FERRY_ASSIGN_OR_RETURN(std::optional<JobMeta> stored, state->LoadJob());
  if (stored) FERRY_RETURN_IF_ERROR(CheckJobMatches(opt, *stored));

  FERRY_ASSIGN_OR_RETURN(j.source, OpenStore(opt.source_uri, StoreRole::kSource));

  // Versions, read without creating anything in the new store.
  std::optional<int64_t> target_version;
  if (FileExists(opt.target_uri)) {
    auto peek = OpenStore(opt.target_uri, StoreRole::kSource);
    if (peek.ok()) {
      FERRY_ASSIGN_OR_RETURN(target_version, (*peek)->ReadVersion());
    }
  }
  FERRY_ASSIGN_OR_RETURN(std::optional<int64_t> legacy_version, j.source->ReadVersion());
  FERRY_ASSIGN_OR_RETURN(VersionVerdict verdict, CheckVersions(opt.from_version, opt.to_version,
                                                               target_version, legacy_version));
  if (verdict == VersionVerdict::kAlreadyDone &&
      !(serve_done && stored && stored->phase == JobPhase::kComplete)) {
    if (opt.online) {
      // A coordinator that stopped between the version bump and the
      // capture's removal left the capture (a slot keeps WAL): remove it.
      auto capture = OpenChangeCapture(opt.source_uri);
      Status removed = capture.ok() ? (*capture)->RemoveCapture() : capture.status();
      LogEvent(removed.ok() ? spdlog::level::info : spdlog::level::warn, "capture_removed",
               {{"source", RedactUri(opt.source_uri)},
                {"error", removed.ok() ? "" : removed.message()}});
    }
    OpenedJob done;
    done.already_done = true;
    return done;
  }
  if (stored && !opt.online &&
      (stored->phase == JobPhase::kCatchingUp || stored->phase == JobPhase::kCuttingOver)) {
    return InvalidArgument(
        "the state holds an online migration (catching up or cutting over): pass --online");
  }

  FERRY_ASSIGN_OR_RETURN(j.targets,
                         ResolveJobTargets(opt, *j.source, stored ? stored->tables : opt.tables));

  if (opt.online) FERRY_RETURN_IF_ERROR(PrepareCapture(opt, stored, &j));

  if (stored) {
    j.resumed = true;
    j.job = *stored;
    FERRY_ASSIGN_OR_RETURN(j.ranges, state->LoadRanges());
    FERRY_ASSIGN_OR_RETURN(j.workers, state->LoadWorkers());
    FERRY_RETURN_IF_ERROR(PrepareTarget(opt, &j));
    if (opt.verify || j.job.verify) FERRY_RETURN_IF_ERROR(CheckReadBack(j));
    if (opt.verify && !j.job.verify) {
      // Turned on for a running job: what is done is verified too.
      j.job.verify = true;
      StateCommit c;
      c.job = &j.job;
      c.events.push_back(Event{SystemClock().NowMs(), "verify", 0, 0, "",
                               "--verify turned on: every range is verified before the "
                               "version bump"});
      FERRY_RETURN_IF_ERROR(state->Commit(c));
    }
    return j;
  }
  j.job.source_uri = RedactUri(opt.source_uri);
  j.job.target_uri = RedactUri(opt.target_uri);
  j.job.from_version = opt.from_version;
  j.job.to_version = opt.to_version;
  j.job.tables = opt.tables;
  j.job.plan_id = NewPlanId();
  j.job.current_version = target_version;
  j.job.verify = opt.verify;
  if (opt.spec) {
    j.job.spec_text = opt.spec->CanonicalText();
    j.job.spec_digest = opt.spec->Digest();
  }
  const int64_t t0 = MonotonicMs();
  for (const TargetPlan& t : j.targets) {
    // Each target's ranges split its SOURCE table's keys; the range names
    // the target (one legacy table may feed several).
    const int64_t t1 = MonotonicMs();
    const size_t before = j.ranges.size();
    FERRY_RETURN_IF_ERROR(PlanTable(*j.source, t.source, opt.range_rows, &j.ranges));
    for (size_t i = before; i < j.ranges.size(); ++i) j.ranges[i].table = t.entry.target;
    LogEvent(spdlog::level::debug, "plan_table",
             {{"table", t.entry.target},
              {"source", t.source.name},
              {"ranges", j.ranges.size() - before},
              {"ms", MonotonicMs() - t1}});
  }
  FERRY_RETURN_IF_ERROR(PrepareTarget(opt, &j));
  if (opt.verify) FERRY_RETURN_IF_ERROR(CheckReadBack(j));
  FERRY_RETURN_IF_ERROR(state->CreateJob(j.job, j.ranges));
  uint64_t est = 0;
  for (const RangeRecord& r : j.ranges) est += r.est_rows;
  LogEvent(spdlog::level::info, "planned",
           {{"plan", j.job.plan_id},
            {"tables", j.targets.size()},
            {"spec", opt.spec ? opt.spec->file : ""},
            {"ranges", j.ranges.size()},
            {"rows_estimated", est},
            {"ms", MonotonicMs() - t0}});
  return j;
}

}  // namespace ferry
