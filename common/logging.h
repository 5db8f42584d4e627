// Structured, one-line-per-event logging on top of spdlog.
//
// LogEvent(level, "grant", {{"range", 3}, {"epoch", 7}}) prints
//   text: 2026-11-21 10:00:00.123 info grant range=3 epoch=7
//   json: {"ts":"...","level":"info","event":"grant","range":3,"epoch":7}
// Fields carry range, epoch, worker and counts. Credentials never belong in
// fields (pass RedactUri(...) for URIs).
//
// RetryLevel(attempt) escalates repeated retries: debug, then info, then warn.
// Thread safety: safe from any thread (spdlog's default logger is mt).
#pragma once

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <string>

namespace ferry {

enum class LogFormat { kText, kJson };

// Sets up the default logger on stderr. `level`: trace|debug|info|warn|error.
void InitLogging(LogFormat format, const std::string& level);
LogFormat CurrentLogFormat();

void LogEvent(spdlog::level::level_enum level, const std::string& event,
              const nlohmann::json& fields = nlohmann::json::object());

spdlog::level::level_enum RetryLevel(int attempt);

}  // namespace ferry
