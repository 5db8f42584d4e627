// The coordinator's settings, from ferry-coordinator's flags.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "spec/migration_spec.h"

namespace ferry {

struct CoordinatorOptions {
  std::string source_uri;
  std::string target_uri;
  std::string state_path;  // --state
  std::string tables;      // comma-separated; "" = all user tables
  int64_t from_version = 1;
  int64_t to_version = 2;
  std::string listen = "tcp://127.0.0.1:7400";
  std::string status_endpoint = "tcp://127.0.0.1:7401";
  int64_t lease_ttl_ms = 10000;
  uint64_t range_rows = 100000;
  uint32_t batch_rows = 10000;  // rows per copy batch (one target transaction)
  uint32_t max_attempts = 3;    // permanent errors before a range fails
  bool exit_when_done = false;
  bool retry_failed = false;
  int64_t stall_ms = 30000;  // a leased range whose cursor has not moved this long is stalled
  // CURVE on the worker endpoint (common/curve.h): both or neither. With
  // them, only workers whose public key is in the allow file get through
  // the handshake (coordinator/zap_handler.h); in-process workers (inproc)
  // are not affected.
  std::string curve_secret_key_file;
  std::string curve_allow_file;
  // CURVE on the status socket: both or neither. With them, only clients
  // (ferryctl --curve-*) whose public key is in the allow file get through,
  // and get answers to any command; everyone else gets nothing.
  std::string status_curve_secret_key_file;
  std::string status_curve_allow_file;
  // Online mode (DESIGN.md "Online mode"): the legacy store keeps taking
  // writes; changes are captured from before planning, replayed once every
  // range is copied, and a cut-over (`ferryctl cutover`, or auto_cutover)
  // freezes, drains, guards and bumps the version.
  bool online = false;
  bool auto_cutover = false;
  int64_t cutover_max_lag_ms = 1000;     // freeze only when the backlog is this young
  int64_t cutover_max_freeze_ms = 5000;  // roll a freeze back after this long
  // --spec FILE, loaded and validated (spec/migration_spec.h) by the caller;
  // nullopt: every selected table is copied as it is.
  std::optional<MigrationSpec> spec;
  // --max-rejects: more rows rejected than this fails the migration.
  uint64_t max_rejects = 0;
  // --verify: every range is verified (and repaired) before the version
  // bump. Kept in the state: a restart with it turns it on for the job, a
  // restart without it keeps the job's setting.
  bool verify = false;
  // --batch-time-ms: workers size batches to take about this long (0 = off;
  // batch_rows is then the cap).
  uint32_t batch_time_ms = 0;
  // --force-split-interval-ms (hidden, for chaos tests): ask every owner
  // that can split to split this often. 0 = the split policy decides.
  int64_t force_split_interval_ms = 0;
};

}  // namespace ferry
