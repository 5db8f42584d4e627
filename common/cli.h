// Shared command-line plumbing for the three executables: logging flags,
// and turning CLI11 parse errors into ferry's one-line errors and exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "common/exit_codes.h"
#include "common/logging.h"
#include "common/version.h"

namespace ferry {

struct LogFlags {
  std::string format = "text";
  std::string level = "info";
};

inline void AddCommonFlags(CLI::App& app, LogFlags* log) {
  app.set_version_flag("--version", std::string("ferry ") + kFerryVersion);
  app.add_option("--log-format", log->format, "text or json (for log shippers)")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", log->level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
}

inline void StartLogging(const LogFlags& log) {
  InitLogging(log.format == "json" ? LogFormat::kJson : LogFormat::kText, log.level);
}

// Returns the exit code for a CLI11 parse outcome (help/version: 0, printed
// by CLI11; errors: one line on stderr and kExitUsage).
inline int HandleParseError(const CLI::App& app, const CLI::ParseError& e) {
  if (e.get_exit_code() == 0) return app.exit(e);
  std::cerr << app.get_name() << ": error: " << e.what() << " (see " << app.get_name()
            << " --help)\n";
  return kExitUsage;
}

// One clear line for an expected failure; returns its exit code.
inline int Fail(const std::string& program, const Status& s) {
  std::cerr << program << ": error: " << s.message() << "\n";
  return ExitCodeFor(s);
}

}  // namespace ferry
