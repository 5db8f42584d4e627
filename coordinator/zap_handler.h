// ZapHandler: answers ZeroMQ's ZAP requests (RFC 27) for CURVE handshakes on
// the coordinator's context. Each socket with CURVE names a ZAP domain
// (zmq::sockopt::zap_domain) with its own allow list: a client whose public
// key is in its socket's list gets through, every other one is refused,
// counted and logged (one line a second at most, however many knock).
//
// Thread safety: owned by the coordinator's event-loop thread, which polls
// socket() and calls Serve() when it is readable.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/status.h"

namespace ferry {

class ZapHandler {
 public:
  // Binds inproc://zeromq.zap.01 on `ctx` (one handler per context; it must
  // exist before the first handshake).
  static Result<std::unique_ptr<ZapHandler>> Bind(zmq::context_t* ctx);
  // Clients of sockets with zap_domain `domain` are let in when their Z85
  // public key is in `allowed`. `what_to_check`: what an operator fixes, for
  // the refusal log line. A domain never added lets nobody in.
  void AddDomain(const std::string& domain, std::set<std::string> allowed,
                 std::string what_to_check);

  zmq::socket_t& socket() { return sock_; }
  // Answers every waiting request. Never blocks.
  void Serve();
  uint64_t rejected() const { return rejected_; }

 private:
  struct Domain {
    std::set<std::string> allowed;
    std::string check;
  };
  explicit ZapHandler(zmq::socket_t sock) : sock_(std::move(sock)) {}

  zmq::socket_t sock_;
  std::map<std::string, Domain> domains_;
  uint64_t rejected_ = 0;
  int64_t log_ms_ = 0;     // last auth_rejected log line
  uint64_t unlogged_ = 0;  // rejections since then
};

// Receives one whole multipart message without blocking into *frames; false
// if none is waiting. Throws zmq::error_t.
bool RecvAll(zmq::socket_t& sock, std::vector<zmq::message_t>* frames);

}  // namespace ferry
