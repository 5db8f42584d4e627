// A headless Chromium for tests that look at a page: Debian's `chromium`
// driven by `chromedriver` (package chromium-driver) over the W3C WebDriver
// HTTP API, with httplib::Client and nlohmann::json. No CDP library, no
// Selenium.
//
// Start() runs chromedriver in its own process group on a free port and opens
// one session (headless, its profile in a directory of the caller); the
// destructor closes the session and ends that process group (chromedriver and
// the browser it started), so no browser outlives the test.
//
// Thread safety: one thread at a time.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "tests/process_util.h"

namespace ferry::testing {

class Browser {
 public:
  // "" if /usr/bin/chromium and /usr/bin/chromedriver are installed, else
  // what is missing (tests skip with it).
  static std::string Missing();

  // A session with a `width` x `height` window; chromedriver's log and the
  // browser profile live in `dir`. kUnavailable naming the step that failed.
  static Result<std::unique_ptr<Browser>> Start(const std::string& dir, int width, int height);
  ~Browser();
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  // Loads `url` and waits for the load event.
  Status Navigate(const std::string& url);
  // Runs `script` (a function body: `return …`; `arguments[i]` are `args`)
  // in the page and returns its value.
  Result<nlohmann::json> Execute(const std::string& script,
                                 const nlohmann::json& args = nlohmann::json::array());
  // Polls `script` every 100 ms until it returns true; false after `timeout_ms`.
  bool WaitTrue(const std::string& script, int timeout_ms);
  // Resizes the window so that the whole page fits in the viewport.
  Status FitWindowToPage(int width);
  // The viewport as PNG bytes.
  Result<std::string> Screenshot();
  // The browser console's entries since the previous call:
  // [{level: SEVERE|WARNING|INFO|…, message, source}].
  Result<nlohmann::json> ConsoleLog();

 private:
  Browser() = default;
  Result<nlohmann::json> Call(const std::string& method, const std::string& path,
                              const nlohmann::json& body, int timeout_s = 60);

  std::unique_ptr<Process> driver_;
  int port_ = 0;
  std::string session_;
};

// Standard base64 (RFC 4648), as WebDriver encodes screenshots.
std::string Base64Decode(const std::string& in);

}  // namespace ferry::testing
