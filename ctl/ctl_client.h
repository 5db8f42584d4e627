// ferryctl's client for the coordinator's status socket (ZeroMQ REQ).
// Each request uses a fresh socket so a lost reply never wedges the next one.
//
// Thread safety: functions; the context must outlive the calls.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <zmq.hpp>

#include "common/status.h"

namespace ferry {

// Sends `command`, waits up to `timeout_ms` for the reply. kUnavailable
// naming the endpoint if nothing answers in time.
Result<std::string> StatusRequest(zmq::context_t& ctx, const std::string& endpoint,
                                  const std::string& command, int timeout_ms);

// The same, parsed as JSON; a reply {"error": ...} becomes kInvalidArgument.
Result<nlohmann::json> StatusRequestJson(zmq::context_t& ctx, const std::string& endpoint,
                                         const std::string& command, int timeout_ms);

// Human renderings.
std::string RenderStatus(const nlohmann::json& status);
std::string RenderProgressLine(const nlohmann::json& status, bool tty, int width);
std::string RenderTable(const nlohmann::json& rows, const std::vector<std::string>& columns);

}  // namespace ferry
