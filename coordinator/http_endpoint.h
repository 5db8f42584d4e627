// Optional HTTP listener for the ecosystem (cpp-httplib):
//   GET /metrics  Prometheus text (the status socket's `metrics`)
//   GET /healthz  200 while the coordinator's event loop answers
//   GET /readyz   200 once the migration is complete, else 503 with the state
//                 (for readiness probes and init containers)
//   GET /, /api/* the live dashboard (coordinator/dashboard.h)
// Handlers run on httplib's threads and reach the coordinator only through
// `ask`: in ferry-coordinator, StatusQueries::Ask — the status socket's
// read-only commands answered by the event loop in process. Nothing served
// over HTTP changes the migration.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "coordinator/dashboard.h"

namespace httplib {
class Server;
}

namespace ferry {

class HttpEndpoint {
 public:
  // `listen` is HOST:PORT (port 0 picks one). kUnavailable if it cannot bind.
  static Result<std::unique_ptr<HttpEndpoint>> Start(const std::string& listen, StatusAsk ask);
  ~HttpEndpoint();
  int port() const { return port_; }

 private:
  HttpEndpoint() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace ferry
