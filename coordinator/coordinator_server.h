// CoordinatorServer: the coordinator's event loop. It owns the sockets — the
// workers' ROUTER (tcp --listen and an inproc endpoint for in-process
// workers), the operators' status REP socket, the CURVE authenticator
// (ZapHandler) — and the in-process status queries of the HTTP endpoint,
// and feeds what arrives to the LeaseService (decisions) and StatusCommands
// (operator commands). Frames are decoded and encoded by worker_codec.h:
// Dispatch is decode and route.
//
// One pass of the loop (Step):
//   1. poll; read a burst of worker frames (up to 4096) and one status
//      request; decode each and hand it to the service, queueing replies;
//   2. service.Tick(): expire leases, finish or fail the job;
//   3. answer waiting lease requests that now have an answer;
//   4. commit everything the pass changed in ONE state transaction, and only
//      then send the replies (an epoch is durable before its grant leaves);
//      a failed commit restores the service from the state and drops the
//      replies (workers retry);
//   5. answer the HTTP endpoint's queries, mirror the boundary / version to
//      the new store, sample rates, log progress.
//
// Every network message is hostile: malformed, truncated, oversized,
// unknown or wrong-version messages get an error reply (or are dropped) and
// are counted; nothing a peer sends can crash or block the loop.
//
// Leadership (coordinator/state_store.h): on a state several coordinators
// share (PostgreSQL), the server binds its sockets and then either leads —
// it opens the job and serves — or stands by: it answers status with
// {"state": "standby", "leader": …}, every worker request with an
// `unavailable` error naming the leader, and tries to take the lead twice a
// second. A leader renews its lead with every commit (and at least every
// TTL/3); when a commit or renewal says it was deposed, or it could not
// renew for a whole TTL, it steps down: drops its in-memory job, unsent
// replies and store connections, and stands by. On a state only one process
// can open (the SQLite file), the server always leads.
//
// Thread safety: one event-loop thread owns everything here; other threads
// reach it only through queries() (StatusQueries::Ask).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/status.h"
#include "coordinator/lease_service.h"
#include "coordinator/marker_mirror.h"
#include "coordinator/metrics.h"
#include "coordinator/online_phase.h"
#include "coordinator/options.h"
#include "coordinator/state_store.h"
#include "coordinator/status_commands.h"
#include "coordinator/status_queries.h"
#include "coordinator/zap_handler.h"
#include "stores/store.h"

namespace ferry {

class CoordinatorServer {
 public:
  CoordinatorServer(CoordinatorOptions options, const Clock* clock, zmq::context_t* ctx);
  ~CoordinatorServer();

  // Validates the flags, opens the state, and either opens the job
  // (job_setup.h: stores, versions, plan, target schema) and binds the
  // sockets, or (a shared state led by another coordinator) binds them and
  // stands by. On success either already_done() (the new store is at the
  // target version: nothing to do) or Run() may be called.
  Status Start();
  bool already_done() const { return already_done_; }

  // Serves until `should_exit()` (checked every pass, at most ~100 ms
  // apart), or until a standby that took over finds the job already done.
  // Ok if the migration completed (or was done); kPermanent if it failed;
  // kFailedPrecondition if stopped before completion. A leader gives up its
  // lead on the way out, so a standby takes over at once.
  Status Run(const std::function<bool()>& should_exit);

  // One loop pass (exposed for tests): waits up to `timeout_ms` for input.
  void Step(int timeout_ms);

  // Decodes and routes one worker frame from `identity`, as a pass would;
  // the reply frame, or nullopt when the request waits or gets no answer.
  // Changes are committed by the next Step. For tests and fuzzing.
  std::optional<zmq::message_t> HandleFrame(const zmq::message_t& identity, const void* data,
                                            size_t size);
  // The status socket's answer to `line` (changes commit with the next Step).
  std::string HandleCommand(const std::string& line);

  std::string inproc_endpoint() const { return inproc_; }
  std::string listen_endpoint() const { return listen_bound_; }
  std::string status_endpoint() const { return status_bound_; }
  StatusQueries* queries() { return queries_.get(); }

  // True while this process leads (always, on an unshared state).
  bool leading() const { return service_ != nullptr; }
  // Only while leading().
  const LeaseService& service() const { return *service_; }
  StateStore* state() { return state_.get(); }
  const ServerMetrics& metrics() const { return metrics_; }
  // Online mode: complete once the capture is removed as well.
  bool complete() const { return service_ && service_->complete() && !service_->finishing(); }
  bool failed() const { return service_ && service_->failed(); }
  // True once every live worker (worker_registry.h) has been told the
  // migration is complete or failed: a batch job (--exit-when-done) waits
  // for this so remote workers exit 0.
  bool AllWorkersToldDone() const { return !service_ || service_->workers().AllLiveToldDone(); }
  uint64_t RowsCopied() const { return service_ ? service_->table().rows_total() : 0; }
  uint64_t BytesCopied() const { return service_ ? service_->table().bytes_total() : 0; }

 private:
  struct Outgoing {
    zmq::message_t identity;
    zmq::message_t payload;
  };

  // `curve_secret` / `status_curve_secret`: the secret keys that turn CURVE
  // on for the worker / status socket ("" = off).
  Status BindSockets(const std::string& curve_secret, const std::string& status_curve_secret);
  // Opens the job on a state this process leads: the service, the status
  // commands, the mirror. `takeover`: a complete job is served, not
  // reported already done (a standby taking over after the end keeps
  // telling late workers and operators that it is complete).
  Status Lead(bool takeover = false);
  // Gives up the job (deposed, or the state lost): stands by.
  void StepDown(const std::string& why);
  // A standby's pass: answers everyone, tries to take the lead.
  void StandbyPass();
  std::string StandbyAnswer(const std::string& line);
  // Keeps the lead renewed; steps down when it is lost.
  void KeepLead();
  // After a failed commit: back to what the state holds; stands by when the
  // state cannot be read (never serve from unpersisted decisions).
  void ReloadAfterFailedCommit();
  void ReadStandbyFrames();
  void ReadWorkerFrames();
  void ReadStatusRequest();
  // Routes one decoded request; nullopt when it waits (its identity kept).
  std::optional<Reply> Route(uint64_t request_id, const Request& request,
                             const zmq::message_t& identity);
  void AnswerWaiting();
  void CommitAndReply();
  void LogProgress();

  CoordinatorOptions opt_;
  const Clock* clock_;
  zmq::context_t* ctx_;
  bool already_done_ = false;
  LeasePolicy policy_;
  int64_t started_ms_ = 0;
  LeaderInfo me_;                     // this process, as the state's leader row names it
  std::optional<LeaderInfo> leader_;  // the leader a standby knows of
  int64_t next_lead_try_ms_ = 0;      // standby: next TryLead (monotonic)
  int64_t last_renewed_ms_ = 0;       // leader: last proof of the lead (monotonic)
  // After a failed state commit (a full disk, a lost state server): no
  // worker message is read and nothing expires until `commit_backoff_until_`
  // (capped, doubling), so a state that cannot take a commit is not retried
  // in a busy loop; read-only status commands are still answered.
  int64_t commit_backoff_until_ = 0;
  int64_t commit_backoff_ms_ = 0;
  std::string state_error_;       // the last commit failure, for status last_error
  bool status_mutating_ = false;  // the pending status request changes something

  std::unique_ptr<StateStore> state_;
  std::unique_ptr<Store> source_;
  std::unique_ptr<Store> target_;
  std::unique_ptr<LeaseService> service_;
  std::unique_ptr<StatusCommands> commands_;
  std::unique_ptr<MarkerMirror> mirror_;
  std::unique_ptr<OnlinePhase> online_;  // --online only
  std::unique_ptr<StatusQueries> queries_;

  std::unique_ptr<ZapHandler> zap_;  // with CURVE only
  std::optional<zmq::socket_t> router_;
  std::optional<zmq::socket_t> status_;
  std::string inproc_, listen_bound_, status_bound_;

  std::vector<Outgoing> replies_;
  std::optional<zmq::message_t> status_reply_;
  // Identities of the lease requests LeaseService holds, by worker id.
  std::map<std::string, zmq::message_t> waiting_from_;
  ServerMetrics metrics_;
  int64_t next_progress_ms_ = 0;
};

}  // namespace ferry
