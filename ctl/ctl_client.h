// ferryctl's client for the coordinator's status socket (ZeroMQ REQ).
// Each request uses a fresh socket so a lost reply never wedges the next one.
//
// Thread safety: functions; the context must outlive the calls.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/curve.h"
#include "common/status.h"

namespace ferry {

// Sends `command`, waits up to `timeout_ms` for the reply. kUnavailable
// naming the endpoint if nothing answers in time. `endpoints` may list
// several coordinators separated by commas (one leads, the others stand
// by): they are asked in order and the first answer that is not a
// standby's is returned (a standby's if all that answer stand by).
// `curve`: the keys for a status socket with CURVE (empty: plain).
Result<std::string> StatusRequest(zmq::context_t& ctx, const std::string& endpoints,
                                  const std::string& command, int timeout_ms,
                                  const CurveClientKeys& curve = {});

// "a,b" -> {"a", "b"} (empty items dropped).
std::vector<std::string> SplitEndpoints(const std::string& endpoints);

// The same, parsed as JSON; a reply {"error": ...} becomes kInvalidArgument.
Result<nlohmann::json> StatusRequestJson(zmq::context_t& ctx, const std::string& endpoint,
                                         const std::string& command, int timeout_ms,
                                         const CurveClientKeys& curve = {});

// Human renderings.
std::string RenderStatus(const nlohmann::json& status);
std::string RenderProgressLine(const nlohmann::json& status, bool tty, int width);
std::string RenderTable(const nlohmann::json& rows, const std::vector<std::string>& columns);

}  // namespace ferry
