#include "coordinator/http_endpoint.h"

#include <fmt/format.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "coordinator/dashboard.h"

namespace ferry {

Result<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(const std::string& listen,
                                                          StatusAsk ask_loop) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgument(fmt::format("--http-listen '{}' must be HOST:PORT", listen));
  }
  std::string host = listen.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (const std::exception&) {
    return InvalidArgument(fmt::format("--http-listen '{}' must be HOST:PORT", listen));
  }
  auto ep = std::unique_ptr<HttpEndpoint>(new HttpEndpoint());
  ep->server_ = std::make_unique<httplib::Server>();
  httplib::Server& svr = *ep->server_;
  auto ask = [ask_loop](const std::string& cmd) { return ask_loop(cmd); };
  svr.Get("/metrics", [ask](const httplib::Request&, httplib::Response& res) {
    auto text = ask("metrics");
    if (!text.ok()) {
      res.status = 503;
      res.set_content(text.status().message() + "\n", "text/plain");
      return;
    }
    res.set_content(*text, "text/plain; version=0.0.4");
  });
  svr.Get("/healthz", [ask](const httplib::Request&, httplib::Response& res) {
    auto st = ask("status");
    res.status = st.ok() ? 200 : 503;
    res.set_content(st.ok() ? "ok\n" : st.status().message() + "\n", "text/plain");
  });
  svr.Get("/readyz", [ask](const httplib::Request&, httplib::Response& res) {
    auto text = ask("status");
    std::string state = "unknown";
    if (text.ok()) {
      auto j = nlohmann::json::parse(*text, nullptr, false);
      if (j.is_object()) state = j.value("state", "unknown");
    }
    res.status = state == "complete" ? 200 : 503;
    res.set_content(nlohmann::json{{"state", state}}.dump() + "\n", "application/json");
  });
  AddDashboardRoutes(svr, ask);
  if (port == 0) {
    port = svr.bind_to_any_port(host);
    if (port < 0) return Unavailable(fmt::format("cannot bind --http-listen {}", listen));
  } else if (!svr.bind_to_port(host, port)) {
    return Unavailable(
        fmt::format("cannot bind --http-listen {} (in use? pick another port)", listen));
  }
  ep->port_ = port;
  ep->thread_ = std::thread([&svr] { svr.listen_after_bind(); });
  return ep;
}

HttpEndpoint::~HttpEndpoint() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace ferry
