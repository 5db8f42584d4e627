#include "worker/coordinator_client.h"

#include "common/clock.h"
#include "common/logging.h"

namespace ferry {

CoordinatorClient::CoordinatorClient(zmq::context_t* ctx, const std::string& endpoints,
                                     CurveClientKeys curve)
    : ctx_(ctx), curve_(std::move(curve)) {
  size_t start = 0;
  while (start <= endpoints.size()) {
    size_t comma = endpoints.find(',', start);
    if (comma == std::string::npos) comma = endpoints.size();
    std::string e = endpoints.substr(start, comma - start);
    if (!e.empty()) endpoints_.push_back(std::move(e));
    start = comma + 1;
  }
  if (endpoints_.empty()) endpoints_.push_back(endpoints);
  Reconnect();
}

void CoordinatorClient::Rotate() {
  current_ = (current_ + 1) % endpoints_.size();
  Reconnect();
}

void CoordinatorClient::Reconnect() {
  sock_.reset();
  sock_.emplace(*ctx_, zmq::socket_type::dealer);
  sock_->set(zmq::sockopt::linger, 0);
  sock_->set(zmq::sockopt::immediate, 1);  // queue only to live connections
  sock_->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxFrameBytes));
  sock_->set(zmq::sockopt::reconnect_ivl, 100);
  sock_->set(zmq::sockopt::reconnect_ivl_max, 2000);
  if (!curve_.server_key.empty()) {
    sock_->set(zmq::sockopt::curve_serverkey, curve_.server_key);
    sock_->set(zmq::sockopt::curve_publickey, curve_.public_key);
    sock_->set(zmq::sockopt::curve_secretkey, curve_.secret_key);
  }
  sock_->connect(endpoints_[current_]);
}

bool CoordinatorClient::SendAsync(capnp::MessageBuilder& builder) {
  try {
    zmq::message_t frame = ToFrame(builder);
    return sock_->send(frame, zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    LogEvent(spdlog::level::debug, "send_failed", {{"error", e.what()}});
    return false;
  }
}

std::unique_ptr<DecodedEnvelope> CoordinatorClient::Poll(int timeout_ms) {
  int64_t deadline = MonotonicMs() + timeout_ms;
  for (;;) {
    std::vector<zmq::pollitem_t> items = {{static_cast<void*>(*sock_), 0, ZMQ_POLLIN, 0}};
    int64_t left = std::max<int64_t>(0, deadline - MonotonicMs());
    try {
      zmq::poll(items, std::chrono::milliseconds(left));
      zmq::message_t msg;
      while (sock_->recv(msg, zmq::recv_flags::dontwait)) {
        auto decoded = DecodeEnvelope(msg.data(), msg.size());
        if (decoded.ok()) return std::move(decoded).value();
        LogEvent(spdlog::level::warn, "bad_reply", {{"error", decoded.status().message()}});
      }
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) LogEvent(spdlog::level::debug, "poll_failed", {{"error", e.what()}});
    }
    if (MonotonicMs() >= deadline) return nullptr;
  }
}

std::unique_ptr<DecodedEnvelope> CoordinatorClient::Call(
    capnp::MallocMessageBuilder& builder, uint64_t request_id, int timeout_ms,
    const std::function<void(DecodedEnvelope&)>& other) {
  int64_t deadline = MonotonicMs() + timeout_ms;
  if (!SendAsync(builder)) {
    // Not connected yet: wait for the connection within the budget.
    while (MonotonicMs() < deadline) {
      Poll(20);
      if (SendAsync(builder)) break;
    }
    if (MonotonicMs() >= deadline) return nullptr;
  }
  for (;;) {
    int64_t left = deadline - MonotonicMs();
    if (left <= 0) return nullptr;
    auto reply = Poll(static_cast<int>(left));
    if (!reply) return nullptr;
    try {
      if (reply->root().getRequestId() == request_id) return reply;
      if (other) other(*reply);
    } catch (const kj::Exception&) {
      // malformed reply: ignore it
    }
  }
}

}  // namespace ferry
