#include "common/logging.h"

#include <fmt/chrono.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>

namespace ferry {
namespace {
std::atomic<LogFormat> g_format{LogFormat::kText};
}

void InitLogging(LogFormat format, const std::string& level) {
  g_format = format;
  auto logger = spdlog::stderr_logger_mt("ferry");
  spdlog::set_default_logger(logger);
  if (format == LogFormat::kJson) {
    spdlog::set_pattern("%v");
  } else {
    spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %l %v");
  }
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::info);
}

LogFormat CurrentLogFormat() { return g_format; }

void LogEvent(spdlog::level::level_enum level, const std::string& event,
              const nlohmann::json& fields) {
  if (!spdlog::should_log(level)) return;
  if (g_format == LogFormat::kJson) {
    nlohmann::json line = nlohmann::json::object();
    auto now = std::chrono::system_clock::now();
    line["ts"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}", now);
    line["level"] = spdlog::level::to_string_view(level).data();
    line["event"] = event;
    for (auto it = fields.begin(); it != fields.end(); ++it) line[it.key()] = it.value();
    spdlog::log(level, "{}", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  std::string text = event;
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    text += ' ';
    text += it.key();
    text += '=';
    if (it.value().is_string()) {
      const std::string& s = it.value().get_ref<const std::string&>();
      if (s.find(' ') != std::string::npos || s.empty()) {
        text += nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      } else {
        text += s;
      }
    } else {
      text += it.value().dump();
    }
  }
  spdlog::log(level, "{}", text);
}

spdlog::level::level_enum RetryLevel(int attempt) {
  if (attempt < 3) return spdlog::level::debug;
  if (attempt < 6) return spdlog::level::info;
  return spdlog::level::warn;
}

}  // namespace ferry
