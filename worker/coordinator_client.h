// CoordinatorClient: the worker's side of the protocol, a DEALER socket to the
// coordinator's ROUTER. With several coordinators (one leads, the others
// stand by: `--coordinator tcp://A:7400,tcp://B:7400`) it talks to one at a
// time; Rotate() moves to the next when the current one stands by or does
// not answer. Requests carry increasing request ids; replies to
// requests the caller gave up on are recognised by id and dropped (a stale
// Grant is handed to `on_stale_grant` so the worker can release it).
//
// The hot path never waits for a round trip: heartbeats are sent with
// SendAsync() and their acks collected with Poll(0).
//
// Thread safety: owned by one worker thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/curve.h"
#include "common/wire.h"

namespace ferry {

class CoordinatorClient {
 public:
  // `endpoints`: one endpoint, or several separated by commas.
  CoordinatorClient(zmq::context_t* ctx, const std::string& endpoints, CurveClientKeys curve = {});

  uint64_t NextRequestId() { return ++last_request_id_; }

  // Queues `builder` without blocking; false if it could not be queued
  // (coordinator not connected / high-water mark).
  bool SendAsync(capnp::MessageBuilder& builder);

  // Next well-formed message within `timeout_ms`; nullptr if none.
  std::unique_ptr<DecodedEnvelope> Poll(int timeout_ms);

  // Sends and waits up to `timeout_ms` for the reply with the same request
  // id. Other messages are passed to `other` (may be empty). nullptr on
  // timeout.
  std::unique_ptr<DecodedEnvelope> Call(capnp::MallocMessageBuilder& builder, uint64_t request_id,
                                        int timeout_ms,
                                        const std::function<void(DecodedEnvelope&)>& other = {});

  // Drops the socket and everything queued in it, and connects afresh.
  void Reconnect();
  // Reconnects to the next endpoint of the list (the same one if only one).
  void Rotate();
  const std::string& endpoint() const { return endpoints_[current_]; }
  size_t endpoint_count() const { return endpoints_.size(); }

 private:
  zmq::context_t* ctx_;
  std::vector<std::string> endpoints_;
  size_t current_ = 0;
  CurveClientKeys curve_;
  std::optional<zmq::socket_t> sock_;
  uint64_t last_request_id_ = 0;
};

}  // namespace ferry
