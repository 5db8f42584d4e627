// StatusCommands: the status socket's commands — one UTF-8 command line in,
// one JSON document out (Prometheus text for `metrics`). Read-only commands
// (status, ranges, workers, metrics, events, help) only read the lease
// service and the state; the others (pause, resume, throttle, drain, revoke)
// act through LeaseService, which records each in the event log.
//
// Unknown, malformed or oversized commands get {"error": "..."}, never a
// crash. The same answers serve the status socket and, in process, the HTTP
// endpoint (read-only commands only: IsReadOnly).
//
// Thread safety: owned by the coordinator's event-loop thread.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "common/clock.h"
#include "coordinator/lease_service.h"
#include "coordinator/metrics.h"
#include "coordinator/state_store.h"

namespace ferry {

class OnlinePhase;

// What the status shows besides the service's own state.
struct StatusContext {
  std::string source;  // redacted URIs
  std::string target;
  int64_t started_ms = 0;
  int64_t stall_ms = 30000;  // --stall-after
  const ServerMetrics* server = nullptr;
  // The last failure to commit the state ("" = none): shown as last_error.
  const std::string* state_error = nullptr;
  // Online mode (--online): the `cutover` command and the online fields of
  // status and metrics. Null for an offline job.
  OnlinePhase* online = nullptr;
};

class StatusCommands {
 public:
  StatusCommands(LeaseService* service, StateStore* state, const Clock* clock, StatusContext ctx)
      : service_(service), state_(state), clock_(clock), ctx_(std::move(ctx)) {}

  std::string Handle(const std::string& line);
  // True for commands that change nothing (safe to serve over HTTP).
  static bool IsReadOnly(const std::string& line);

  // `status`'s fields.
  nlohmann::json StatusFields() const;
  // copying | verifying | paused | catching_up | cutting_over | finalizing | complete | failed.
  std::string StateName() const;

 private:
  std::string RangesJson(const std::string& filter) const;
  std::string WorkersJson() const;
  std::string EventsJson(const std::string& arg) const;
  std::string MetricsText() const;

  LeaseService* service_;
  StateStore* state_;
  const Clock* clock_;
  StatusContext ctx_;
};

// {"error": message}, safe for any bytes.
std::string ErrorJson(const std::string& message);

}  // namespace ferry
