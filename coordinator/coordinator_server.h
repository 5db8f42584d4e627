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
#include "common/store.h"
#include "coordinator/lease_service.h"
#include "coordinator/marker_mirror.h"
#include "coordinator/metrics.h"
#include "coordinator/options.h"
#include "coordinator/state_store.h"
#include "coordinator/status_commands.h"
#include "coordinator/status_queries.h"
#include "coordinator/zap_handler.h"

namespace ferry {

class CoordinatorServer {
 public:
  CoordinatorServer(CoordinatorOptions options, const Clock* clock, zmq::context_t* ctx);
  ~CoordinatorServer();

  // Validates the flags, opens the job (job_setup.h: state, stores,
  // versions, plan, target schema) and binds the sockets. On success either
  // already_done() (the new store is at the target version: nothing to do)
  // or Run() may be called.
  Status Start();
  bool already_done() const { return already_done_; }

  // Serves until `should_exit()` (checked every pass, at most ~100 ms
  // apart). Ok if the migration completed; kPermanent if it failed;
  // kFailedPrecondition if stopped before completion.
  Status Run(const std::function<bool()>& should_exit);

  // One loop pass (exposed for tests): waits up to `timeout_ms` for input.
  void Step(int timeout_ms);

  // Decodes and routes one worker frame from `identity`, as a pass would;
  // the reply frame, or nullopt when the request waits or gets no answer.
  // Changes are committed by the next Step. For tests and fuzzing.
  std::optional<zmq::message_t> HandleFrame(const zmq::message_t& identity, const void* data,
                                            size_t size);
  // The status socket's answer to `line` (changes commit with the next Step).
  std::string HandleCommand(const std::string& line) { return commands_->Handle(line); }

  std::string inproc_endpoint() const { return inproc_; }
  std::string listen_endpoint() const { return listen_bound_; }
  std::string status_endpoint() const { return status_bound_; }
  StatusQueries* queries() { return queries_.get(); }

  const LeaseService& service() const { return *service_; }
  StateStore* state() { return state_.get(); }
  const ServerMetrics& metrics() const { return metrics_; }
  bool complete() const { return service_->complete(); }
  bool failed() const { return service_->failed(); }
  // True once every live worker (workers_registry.h) has been told the
  // migration is complete or failed: a batch job (--exit-when-done) waits
  // for this so remote workers exit 0.
  bool AllWorkersToldDone() const { return service_->workers().AllLiveToldDone(); }
  uint64_t RowsCopied() const { return service_->table().rows_total(); }
  uint64_t BytesCopied() const { return service_->table().bytes_total(); }

 private:
  struct Outgoing {
    zmq::message_t identity;
    zmq::message_t payload;
  };

  Status BindSockets(const std::string& curve_secret);
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

  std::unique_ptr<StateStore> state_;
  std::unique_ptr<Store> source_;
  std::unique_ptr<Store> target_;
  std::unique_ptr<LeaseService> service_;
  std::unique_ptr<StatusCommands> commands_;
  std::unique_ptr<MarkerMirror> mirror_;
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
