#include "tests/dashboard_poller.h"

#include <fmt/format.h>
#include <httplib.h>

#include <chrono>

#include "tests/webdriver.h"

namespace ferry::testing {

Result<std::unique_ptr<DashboardPoller>> DashboardPoller::Start(Mode mode, int http_port,
                                                                const std::string& dir) {
  auto p = std::unique_ptr<DashboardPoller>(new DashboardPoller());
  p->mode_ = mode;
  p->port_ = http_port;
  if (mode == Mode::kBrowser) {
    auto b = Browser::Start(dir, 1440, 1000);
    if (!b.ok()) return b.status();
    p->browser_ = std::move(b).value();
    Status s = p->browser_->Navigate(fmt::format("http://127.0.0.1:{}/", http_port));
    if (!s.ok()) return s;
  } else {
    p->thread_ = std::thread([q = p.get()] { q->RunHttp(); });
  }
  return p;
}

void DashboardPoller::RunHttp() {
  httplib::Client cli("127.0.0.1", port_);
  cli.set_read_timeout(30);
  const char* paths[] = {"/", "/api/status", "/api/workers", "/api/events", "/api/ranges"};
  auto next = std::chrono::steady_clock::now();
  while (!stop_) {
    for (const char* path : paths) {
      auto res = cli.Get(path);
      if (res && res->status == 200) {
        stats_.requests++;
        stats_.bytes += res->body.size();
      } else {
        stats_.errors++;
      }
    }
    next += std::chrono::seconds(1);
    while (!stop_ && std::chrono::steady_clock::now() < next) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

DashboardPoller::Stats DashboardPoller::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (browser_) {
    auto t = browser_->Execute(
        "return [ferryDashboard.rangeCount(), ferryDashboard.timings,"
        " performance.getEntriesByType('resource').length]");
    if (t.ok()) {
      stats_.note = fmt::format("page: {} ranges shown, {} requests, timings {}", (*t)[0].dump(),
                                (*t)[2].dump(), (*t)[1].dump());
    }
    browser_.reset();
  }
  return stats_;
}

DashboardPoller::~DashboardPoller() { Stop(); }

}  // namespace ferry::testing
