// The worker protocol as typed values: what LeaseService takes and returns.
// No ZeroMQ or Cap'n Proto here — coordinator/worker_codec.h converts
// between these and the Envelope frames of schemas/ferry.capnp.
//
// Lifetime: string_views (Progress::cursor) point into the decoded frame and
// are valid only for the call they are passed to.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/lease_policy.h"

namespace ferry {

// What a worker can do beyond copying (schemas/ferry.capnp featureVerify,
// featureSplit).
inline constexpr uint32_t kFeatureVerify = 1;
inline constexpr uint32_t kFeatureSplit = 2;

// Which lease a message is about: the range, the fencing token it was granted
// under, and the worker holding it. Any mismatch is `lease lost`.
struct LeaseRef {
  uint64_t range = 0;
  uint64_t epoch = 0;
  std::string worker;
};

// A range's progress as of the last committed batch.
struct Progress {
  std::string_view cursor;  // encoded key of the last row copied; empty = none yet
  uint64_t rows = 0;
  uint64_t bytes = 0;
  uint64_t digest = 0;
  uint64_t rejected = 0;  // rows a migration spec could not move (in __ferry_rejects)
  // Verify leases: rows repaired in the range so far (cumulative). The
  // cursor is then the verification's; rows, bytes and digest are unused.
  uint64_t repaired = 0;
};

// ---- requests (worker -> coordinator) ----
struct RegisterRequest {
  std::string worker;
  std::string host;
  int64_t pid = 0;
  std::string version;
  bool supports_spec = false;  // applies RegisteredReply::spec
  uint32_t features = 0;       // kFeatureVerify | kFeatureSplit
};

struct LeaseRequest {
  std::string worker;
  uint32_t features = 0;
};

enum class ReportKind { kHeartbeat, kComplete, kRelease };

// One report for heartbeat, completion and release.
struct ProgressReport {
  ReportKind kind = ReportKind::kHeartbeat;
  LeaseRef lease;
  Progress progress;
  bool next = false;     // completion: also lease me the next range
  bool leaving = false;  // release: the worker is shutting down
  uint32_t features = 0;
  // Copy leases: the owner proposes to split at this key, keeping
  // `split_rows` rows after its cursor (empty: no proposal).
  std::string_view split_key;
  uint64_t split_rows = 0;
  // Verify leases: keys repaired since the previous report (capped by the
  // worker) and how many more were not listed.
  std::vector<std::string> repaired_keys;
  uint64_t repaired_more = 0;
};

// A worker could not copy its range (lease.range != 0), or cannot use its
// stores at all and leaves (lease.range == 0).
struct ErrorReport {
  LeaseRef lease;
  bool permanent = false;
  std::string message;
};

// The change applier's heartbeat and progress (online mode; schemas/
// ferry.capnp ApplyReport). lease.range is 0.
struct ApplyReportRequest {
  LeaseRef lease;
  int64_t position = 0;   // last applied change position
  int64_t caught_up = 0;  // every change committed before it is applied (0 = unknown)
  uint64_t applied = 0;   // changes applied so far
  uint64_t pending = 0;   // changes known not applied yet (lower bound)
  int64_t oldest_pending_ms = 0;
  bool release = false;
  bool leaving = false;
  std::string error;  // the last batch failed with this
  bool permanent = false;
};

using Request =
    std::variant<RegisterRequest, LeaseRequest, ProgressReport, ErrorReport, ApplyReportRequest>;

// ---- replies (coordinator -> worker) ----
struct RegisteredReply {
  std::string source_uri;
  std::string target_uri;
  uint32_t batch_rows = 0;
  LeasePolicy policy;
  std::string plan_id;
  int64_t to_version = 0;
  std::string spec;            // the migration spec's canonical text; empty = none
  uint32_t batch_time_ms = 0;  // --batch-time-ms; 0 = fixed batches of batch_rows
};

struct GrantReply {
  uint64_t range = 0;
  uint64_t epoch = 0;
  std::string table;
  std::string lo, hi, cursor;
  uint64_t rows = 0, bytes = 0, digest = 0, rejected = 0;
  int64_t ttl_ms = 0;
  uint64_t rows_per_second = 0;  // this worker's share of the throttle; 0 = none
  bool verify = false;           // a verify lease: cursor is the verification's
  uint64_t repaired = 0;         // verify leases: rows repaired so far
  uint64_t parent = 0;           // split off this range (0: planned)
};

struct NoWorkReply {
  uint32_t retry_after_ms = 0;
  bool complete = false;  // the migration is complete: exit 0
  bool paused = false;
  bool failed = false;    // the migration failed: exit non-zero
  bool draining = false;  // this worker was drained: exit 0
};

struct AckReply {
  uint64_t range = 0;
  uint64_t epoch = 0;
  int64_t ttl_ms = 0;  // lease renewed for this long from the request
  bool paused = false;
  bool drain = false;
  uint64_t rows_per_second = 0;
  int64_t drain_to = 0;  // the change applier's cut-over target (online mode)
  // Copy leases: propose a split keeping about split_keep rows after the cursor.
  bool split = false;
  uint64_t split_keep = 0;
  // The range's end as the coordinator knows it (hi_valid; "" = table end).
  bool hi_valid = false;
  std::string hi;
  uint32_t waiting = 0;  // splittable copy leases: workers waiting for work now
};

// The change applier's lease (online mode).
struct ApplyGrantReply {
  uint64_t epoch = 0;
  int64_t ttl_ms = 0;
  uint64_t ranges_total = 0;
  int64_t drain_to = 0;
  std::vector<std::string> tables;  // the migrated legacy tables
};

enum class ErrorCode {
  kBadMessage,
  kVersionMismatch,
  kLeaseLost,
  kUnknownWorker,
  kInternal,
  kUnavailable
};

struct ErrorReply {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  uint64_t range = 0;
  uint64_t epoch = 0;
};

using Reply =
    std::variant<RegisteredReply, GrantReply, NoWorkReply, AckReply, ErrorReply, ApplyGrantReply>;

}  // namespace ferry
