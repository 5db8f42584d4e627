// Someone watching the dashboard, for ferry-bench case 3 ("serving the page
// costs the coordinator's event loop nothing measurable"):
//   kHttp:    a thread that, every second, GETs / and every /api/* endpoint
//             (the full /api/ranges included) — heavier than the page;
//   kBrowser: a headless Chromium showing the page (tests/webdriver.h),
//             which polls the way the page does.
// Start() begins at once; Stop() (or the destructor) ends it and returns
// what it did.
//
// Thread safety: one thread calls Start/Stop; the poller has its own thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace ferry::testing {

class Browser;

class DashboardPoller {
 public:
  enum class Mode { kHttp, kBrowser };
  struct Stats {
    uint64_t requests = 0;  // kHttp: HTTP requests answered
    uint64_t bytes = 0;     // kHttp: body bytes received
    uint64_t errors = 0;    // kHttp: requests without a 200
    std::string note;       // kBrowser: the page's own figures
  };

  // `dir` holds the browser's profile and chromedriver's log (kBrowser).
  static Result<std::unique_ptr<DashboardPoller>> Start(Mode mode, int http_port,
                                                        const std::string& dir);
  ~DashboardPoller();
  Stats Stop();

 private:
  DashboardPoller() = default;
  void RunHttp();

  Mode mode_ = Mode::kHttp;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Stats stats_;
  std::unique_ptr<Browser> browser_;
};

}  // namespace ferry::testing
