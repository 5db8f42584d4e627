#include "ctl/online_commands.h"

#include <fmt/format.h>

#include <iostream>
#include <thread>

#include "common/clock.h"
#include "common/exit_codes.h"
#include "common/signals.h"
#include "ctl/ctl_client.h"
#include "stores/change_capture.h"

namespace ferry {
namespace {

constexpr int64_t kPollMs = 200;
constexpr int64_t kGraceMs = 10000;  // after the coordinator's own timeout

}  // namespace

int CutoverCommand(zmq::context_t& ctx, const std::string& endpoint, double timeout_s,
                   int request_ms, const CurveClientKeys& curve) {
  const std::string line =
      timeout_s > 0 ? fmt::format("cutover {}", timeout_s) : std::string("cutover");
  auto first = StatusRequestJson(ctx, endpoint, line, request_ms, curve);
  if (!first.ok()) {
    std::cerr << "ferryctl: error: " << first.status().message() << "\n";
    return first.status().code() == Code::kUnavailable ? kExitUnavailable : kExitFailed;
  }
  const uint64_t attempt = first->value("attempt", uint64_t{0});
  std::cerr << fmt::format(
      "ferry: cut-over {} {}\n", attempt,
      first->value("state", "") == "complete" ? "already complete" : "started");
  const int64_t deadline =
      timeout_s > 0 ? MonotonicMs() + static_cast<int64_t>(timeout_s * 1000) + kGraceMs : INT64_MAX;
  std::string last = "no answer yet";
  for (;;) {
    auto st = StatusRequestJson(ctx, endpoint, "status", request_ms, curve);
    if (st.ok()) {
      const std::string state = st->value("state", "");
      const uint64_t now_attempt = st->value("cutover_attempt", uint64_t{0});
      const std::string result = st->value("cutover_result", "");
      if (state == "complete") {
        const auto& freeze = (*st)["cutover_freeze_ms"];
        std::cout << fmt::format(
            "ferry: cut-over complete: the new store is at version {}; legacy writes to the "
            "migrated tables are refused{}\n",
            st->value("to_version", int64_t{0}),
            freeze.is_number() ? fmt::format(" (writes were frozen {} ms)", freeze.get<int64_t>())
                               : std::string());
        return kExitOk;
      }
      if (state == "failed") {
        std::cerr << "ferryctl: error: the migration failed: " << st->value("failure", "") << "\n";
        return kExitFailed;
      }
      if (now_attempt >= attempt && (result == "failed" || result == "timed_out")) {
        std::cerr << fmt::format(
            "ferryctl: error: cut-over {} {}: {} (the migration is {}; legacy "
            "writes flow again)\n",
            now_attempt, result == "timed_out" ? "timed out" : "failed",
            st->value("cutover_error", ""), state);
        return result == "timed_out" ? kExitTimeout : kExitFailed;
      }
      last = "the migration is " + state;
    } else {
      last = st.status().message();
    }
    if (MonotonicMs() >= deadline || StopRequested()) {
      std::cerr << fmt::format("ferryctl: error: timed out waiting for the cut-over: {}\n", last);
      return kExitTimeout;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
  }
}

int UnguardCommand(const std::string& source_uri, const std::string& tables) {
  std::vector<std::string> list;
  size_t start = 0;
  while (start <= tables.size() && !tables.empty()) {
    const size_t comma = tables.find(',', start);
    const std::string t =
        tables.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!t.empty()) list.push_back(t);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  auto capture = OpenChangeCapture(source_uri);
  if (!capture.ok()) {
    std::cerr << "ferryctl: error: " << capture.status().message() << "\n";
    return ExitCodeFor(capture.status());
  }
  auto removed = (*capture)->Unguard(list);
  if (!removed.ok()) {
    std::cerr << "ferryctl: error: " << removed.status().message() << "\n";
    return ExitCodeFor(removed.status());
  }
  for (const std::string& r : *removed) std::cout << "removed " << r << "\n";
  if (removed->empty()) {
    std::cout << fmt::format("ferry: nothing to remove on {}\n", RedactUri(source_uri));
  }
  return kExitOk;
}

}  // namespace ferry
