// Optional HTTP listener for the ecosystem (cpp-httplib):
//   GET /metrics  Prometheus text (the status socket's `metrics`)
//   GET /healthz  200 while the coordinator answers its status socket
//   GET /readyz   200 once the migration is complete, else 503 with the state
//                 (for readiness probes and init containers)
//   GET /, /api/* the live dashboard (coordinator/dashboard.h)
// Handlers run on httplib's threads and talk to the coordinator only through
// its status socket (a fresh REQ per request), so no coordinator state is
// shared across threads.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "common/status.h"

namespace httplib {
class Server;
}

namespace ferry {

class HttpEndpoint {
 public:
  // `listen` is HOST:PORT (port 0 picks one). kUnavailable if it cannot bind.
  static Result<std::unique_ptr<HttpEndpoint>> Start(const std::string& listen,
                                                     const std::string& status_endpoint,
                                                     zmq::context_t* ctx);
  ~HttpEndpoint();
  int port() const { return port_; }

 private:
  HttpEndpoint() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace ferry
