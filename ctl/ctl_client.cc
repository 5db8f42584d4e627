#include "ctl/ctl_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace ferry {

namespace {

// One request to one status socket.
Result<std::string> AskOne(zmq::context_t& ctx, const std::string& endpoint,
                           const std::string& command, int timeout_ms,
                           const CurveClientKeys& curve) {
  try {
    zmq::socket_t sock(ctx, zmq::socket_type::req);
    sock.set(zmq::sockopt::linger, 0);
    if (curve.on()) {
      sock.set(zmq::sockopt::curve_serverkey, curve.server_key);
      sock.set(zmq::sockopt::curve_publickey, curve.public_key);
      sock.set(zmq::sockopt::curve_secretkey, curve.secret_key);
    }
    sock.set(zmq::sockopt::rcvtimeo, timeout_ms);
    sock.set(zmq::sockopt::sndtimeo, timeout_ms);
    sock.connect(endpoint);
    if (!sock.send(zmq::buffer(command), zmq::send_flags::none)) {
      return Unavailable(fmt::format("cannot send to the coordinator at {}", endpoint));
    }
    zmq::message_t reply;
    if (!sock.recv(reply)) {
      return Unavailable(fmt::format(
          "no answer from the coordinator at {} within {} ms: is ferry-coordinator running, and "
          "is --endpoint its --status-endpoint?{}",
          endpoint, timeout_ms,
          curve.on() ? " With CURVE: is --curve-server-key-file the status socket's public key, "
                       "and this client's public key in its --status-curve-allow-file?"
                     : ""));
    }
    return reply.to_string();
  } catch (const zmq::error_t& e) {
    return InvalidArgument(fmt::format("bad endpoint {}: {}", endpoint, e.what()));
  }
}

// A standby coordinator's answer: {"state": "standby", ...} (or an error
// carrying that state), or its metrics text.
bool FromStandby(const std::string& reply) {
  if (reply.rfind("{", 0) != 0)
    return reply.find("\nferry_standby 1\n") != std::string::npos ||
           reply.rfind("# HELP ferry_standby", 0) == 0;
  nlohmann::json j = nlohmann::json::parse(reply, nullptr, false);
  return j.is_object() && j.value("state", "") == "standby";
}

}  // namespace

std::vector<std::string> SplitEndpoints(const std::string& endpoints) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= endpoints.size()) {
    size_t comma = endpoints.find(',', start);
    if (comma == std::string::npos) comma = endpoints.size();
    if (comma > start) out.push_back(endpoints.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

Result<std::string> StatusRequest(zmq::context_t& ctx, const std::string& endpoints,
                                  const std::string& command, int timeout_ms,
                                  const CurveClientKeys& curve) {
  const std::vector<std::string> list = SplitEndpoints(endpoints);
  if (list.empty()) return InvalidArgument("--endpoint is empty");
  if (list.size() == 1) return AskOne(ctx, list[0], command, timeout_ms, curve);
  std::optional<std::string> standby;
  Status last;
  for (const std::string& e : list) {
    auto reply = AskOne(ctx, e, command, timeout_ms, curve);
    if (!reply.ok()) {
      last = reply.status();
      continue;
    }
    if (!FromStandby(*reply)) return reply;
    if (!standby) standby = std::move(*reply);
  }
  if (standby) return *standby;  // every coordinator that answered stands by
  return last;
}

Result<nlohmann::json> StatusRequestJson(zmq::context_t& ctx, const std::string& endpoint,
                                         const std::string& command, int timeout_ms,
                                         const CurveClientKeys& curve) {
  FERRY_ASSIGN_OR_RETURN(std::string text,
                         StatusRequest(ctx, endpoint, command, timeout_ms, curve));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return Internal("the coordinator answered with malformed JSON");
  if (j.is_object() && j.contains("error")) {
    return InvalidArgument(j["error"].get<std::string>());
  }
  return j;
}

namespace {

std::string Str(const nlohmann::json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::string Duration(const nlohmann::json& secs) {
  if (!secs.is_number()) return "-";
  int64_t s = secs.get<int64_t>();
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace

std::string RenderProgressLine(const nlohmann::json& st, bool tty, int width) {
  double total = st.value("rows_estimated", 0.0);
  double done = st.value("rows_copied", 0.0);
  double frac = total > 0 ? std::min(1.0, done / total) : (st.value("state", "") == "complete");
  if (st.value("state", "") == "complete") frac = 1.0;
  std::string bar;
  if (tty) {
    int n = std::max(10, width);
    int filled = static_cast<int>(frac * n);
    bar = "[" + std::string(filled, '#') + std::string(n - filled, '.') + "] ";
  }
  return fmt::format("{}{:5.1f}% {} rows={} rows/s={} eta={} ranges p/l/d/f={}/{}/{}/{} workers={}",
                     bar, frac * 100, Str(st["state"]), Str(st["rows_copied"]),
                     Str(st["rows_per_second"]), Duration(st["eta_seconds"]),
                     Str(st["ranges_pending"]), Str(st["ranges_leased"]), Str(st["ranges_done"]),
                     Str(st.value("ranges_failed", nlohmann::json(0))), Str(st["workers_live"]));
}

std::string RenderStatus(const nlohmann::json& st) {
  std::string out = RenderProgressLine(st, true, 40) + "\n";
  // The status fields in the order an operator reads them.
  static constexpr const char* kFields[] = {
      "state",         "from_version",   "to_version",      "current_version",
      "ranges_total",  "ranges_pending", "ranges_leased",   "ranges_done",
      "ranges_failed", "ranges_stalled", "rows_copied",     "rows_rejected",
      "bytes_copied",  "rows_estimated", "rows_per_second", "eta_seconds",
      "workers_live",  "boundary",       "paused",          "throttle_rows_per_second",
      "failure",       "last_error",     "source",          "target"};
  for (const char* k : kFields) {
    if (st.contains(k)) out += fmt::format("{:<26}{}\n", k, Str(st[k]));
  }
  return out;
}

std::string RenderTable(const nlohmann::json& rows, const std::vector<std::string>& columns) {
  std::vector<size_t> w(columns.size());
  std::vector<std::vector<std::string>> cells;
  for (size_t c = 0; c < columns.size(); ++c) w[c] = columns[c].size();
  for (const auto& r : rows) {
    std::vector<std::string> line;
    for (size_t c = 0; c < columns.size(); ++c) {
      std::string v = r.contains(columns[c]) ? Str(r[columns[c]]) : "";
      w[c] = std::max(w[c], v.size());
      line.push_back(std::move(v));
    }
    cells.push_back(std::move(line));
  }
  std::string out;
  for (size_t c = 0; c < columns.size(); ++c) out += fmt::format("{:<{}}  ", columns[c], w[c]);
  out += "\n";
  for (const auto& line : cells) {
    for (size_t c = 0; c < columns.size(); ++c) out += fmt::format("{:<{}}  ", line[c], w[c]);
    out += "\n";
  }
  return out;
}

}  // namespace ferry
