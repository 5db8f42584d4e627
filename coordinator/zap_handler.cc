#include "coordinator/zap_handler.h"

#include <fmt/format.h>

#include "common/clock.h"
#include "common/logging.h"

namespace ferry {
namespace {

constexpr size_t kMaxRequestsPerCall = 4096;

}  // namespace

bool RecvAll(zmq::socket_t& sock, std::vector<zmq::message_t>* frames) {
  frames->clear();
  zmq::message_t part;
  if (!sock.recv(part, zmq::recv_flags::dontwait)) return false;
  frames->push_back(std::move(part));
  while (frames->back().more()) {
    zmq::message_t next;
    if (!sock.recv(next, zmq::recv_flags::dontwait)) break;
    frames->push_back(std::move(next));
  }
  return true;
}

Result<std::unique_ptr<ZapHandler>> ZapHandler::Bind(zmq::context_t* ctx) {
  try {
    zmq::socket_t sock(*ctx, zmq::socket_type::rep);
    sock.set(zmq::sockopt::linger, 0);
    sock.bind("inproc://zeromq.zap.01");
    return std::unique_ptr<ZapHandler>(new ZapHandler(std::move(sock)));
  } catch (const zmq::error_t& e) {
    return Unavailable(fmt::format("cannot start the CURVE authenticator: {}", e.what()));
  }
}

void ZapHandler::AddDomain(const std::string& domain, std::set<std::string> allowed,
                           std::string what_to_check) {
  domains_[domain] = Domain{std::move(allowed), std::move(what_to_check)};
}

void ZapHandler::Serve() {
  // ZAP: version, request id, domain, address, identity, mechanism,
  // credentials -> version, request id, status code, status text, user id,
  // metadata. REP: one answer before the next request.
  for (size_t n = 0; n < kMaxRequestsPerCall; ++n) {
    std::vector<zmq::message_t> req;
    try {
      if (!RecvAll(sock_, &req)) return;
    } catch (const zmq::error_t& e) {
      LogEvent(spdlog::level::warn, "zap_recv_error", {{"error", e.what()}});
      return;
    }
    std::string key;
    if (req.size() >= 7 && req[5].to_string_view() == "CURVE" && req[6].size() == 32) {
      char z85[41];
      zmq_z85_encode(z85, static_cast<const uint8_t*>(req[6].data()), 32);
      key = z85;
    }
    const std::string domain = req.size() > 2 ? req[2].to_string() : "";
    auto dom = domains_.find(domain);
    const bool ok = !key.empty() && dom != domains_.end() && dom->second.allowed.count(key) > 0;
    if (!ok) {
      rejected_++;
      unlogged_++;
      const int64_t now = MonotonicMs();
      if (now - log_ms_ >= 1000) {
        LogEvent(spdlog::level::warn, "auth_rejected",
                 {{"address", req.size() > 3 ? req[3].to_string() : ""},
                  {"domain", domain},
                  {"key", key},
                  {"rejected", unlogged_},
                  {"check", dom != domains_.end() ? dom->second.check : "unknown ZAP domain"}});
        log_ms_ = now;
        unlogged_ = 0;
      }
    }
    const std::string request_id = req.size() > 1 ? req[1].to_string() : "";
    const std::string fields[] = {
        "1.0", request_id, ok ? "200" : "400", ok ? "OK" : "key not allowed", ok ? key : "", ""};
    try {
      for (size_t i = 0; i < 6; ++i) {
        sock_.send(zmq::buffer(fields[i]),
                   i < 5 ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      LogEvent(spdlog::level::warn, "zap_send_error", {{"error", e.what()}});
      return;
    }
  }
}

}  // namespace ferry
