#include "tests/webdriver.h"

#include <fmt/format.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace ferry::testing {
namespace {

constexpr const char* kChromium = "/usr/bin/chromium";
constexpr const char* kChromedriver = "/usr/bin/chromedriver";
// The real binary behind Debian's /usr/bin/chromium launcher script (which
// only adds flags we pass ourselves); the launcher if it is not there.
constexpr const char* kChromiumBinary = "/usr/lib/chromium/chromium";

}  // namespace

std::string Browser::Missing() {
  std::string missing;
  for (const char* p : {kChromium, kChromedriver}) {
    if (access(p, X_OK) != 0) missing += std::string(missing.empty() ? "" : " and ") + p;
  }
  return missing.empty() ? ""
                         : missing + " not installed (Debian packages chromium, chromium-driver)";
}

Result<std::unique_ptr<Browser>> Browser::Start(const std::string& dir, int width, int height) {
  if (std::string m = Missing(); !m.empty()) return Unavailable(m);
  auto b = std::unique_ptr<Browser>(new Browser());
  b->port_ = FreePort();
  // setsid: chromedriver leads a process group of its own, which the
  // destructor ends with whatever browser processes it started.
  b->driver_ = std::make_unique<Process>(
      std::vector<std::string>{"/usr/bin/setsid", kChromedriver, fmt::format("--port={}", b->port_),
                               "--log-path=" + dir + "/chromedriver.log"},
      dir + "/chromedriver.out");
  httplib::Client probe("127.0.0.1", b->port_);
  probe.set_connection_timeout(1);
  bool ready = WaitFor(
      [&] {
        auto res = probe.Get("/status");
        if (!res || res->status != 200) return false;
        auto j = nlohmann::json::parse(res->body, nullptr, false);
        return j.is_object() && j["value"].value("ready", false);
      },
      20000);
  if (!ready) return Unavailable("chromedriver did not become ready; see " + dir);
  const std::string binary = access(kChromiumBinary, X_OK) == 0 ? kChromiumBinary : kChromium;
  nlohmann::json caps = {
      {"browserName", "chrome"},
      {"goog:chromeOptions",
       {{"binary", binary},
        {"args",
         {"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--no-first-run", "--disable-background-networking", "--disable-component-update",
          "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1",
          "--user-data-dir=" + dir + "/chromium-profile",
          fmt::format("--window-size={},{}", width, height)}}}},
      {"goog:loggingPrefs", {{"browser", "ALL"}}},
  };
  auto r = b->Call("POST", "/session", {{"capabilities", {{"alwaysMatch", caps}}}}, 120);
  if (!r.ok()) return Unavailable("cannot open a chromium session: " + r.status().message());
  b->session_ = (*r).value("sessionId", "");
  if (b->session_.empty()) return Unavailable("chromedriver answered no session id: " + r->dump());
  return b;
}

Browser::~Browser() {
  if (!session_.empty()) (void)Call("DELETE", "/session/" + session_, nullptr, 20);
  if (driver_) {
    const pid_t group = driver_->pid();
    driver_->Signal(SIGTERM);
    if (!driver_->Wait(5000)) driver_->Kill();
    if (group > 0) kill(-group, SIGKILL);  // stragglers of the group we made
  }
}

Result<nlohmann::json> Browser::Call(const std::string& method, const std::string& path,
                                     const nlohmann::json& body, int timeout_s) {
  httplib::Client cli("127.0.0.1", port_);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(timeout_s);
  cli.set_write_timeout(timeout_s);
  httplib::Result res{nullptr, httplib::Error::Unknown};
  if (method == "GET") {
    res = cli.Get(path.c_str());
  } else if (method == "DELETE") {
    res = cli.Delete(path.c_str());
  } else {
    res = cli.Post(path.c_str(), body.is_null() ? "{}" : body.dump(), "application/json");
  }
  if (!res) {
    return Unavailable(
        fmt::format("WebDriver {} {}: {}", method, path, httplib::to_string(res.error())));
  }
  auto j = nlohmann::json::parse(res->body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Unavailable(
        fmt::format("WebDriver {} {}: not JSON: {}", method, path, res->body.substr(0, 200)));
  }
  nlohmann::json value = j.contains("value") ? j["value"] : nlohmann::json();
  if (res->status != 200) {
    std::string msg = value.is_object() ? value.value("message", res->body) : res->body;
    return Unavailable(
        fmt::format("WebDriver {} {}: HTTP {}: {}", method, path, res->status, msg.substr(0, 500)));
  }
  return value;
}

Status Browser::Navigate(const std::string& url) {
  auto r = Call("POST", "/session/" + session_ + "/url", {{"url", url}});
  return r.ok() ? Status::Ok() : r.status();
}

Result<nlohmann::json> Browser::Execute(const std::string& script, const nlohmann::json& args) {
  return Call("POST", "/session/" + session_ + "/execute/sync",
              {{"script", script}, {"args", args}});
}

bool Browser::WaitTrue(const std::string& script, int timeout_ms) {
  return WaitFor(
      [&] {
        auto r = Execute(script);
        if (!r.ok() || !r->is_boolean() || !r->get<bool>()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(90));
          return false;
        }
        return true;
      },
      timeout_ms);
}

Status Browser::FitWindowToPage(int width) {
  auto r = Execute(
      "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]");
  if (!r.ok()) return r.status();
  const int height = (*r)[0].get<int>() + (*r)[1].get<int>();
  auto w =
      Call("POST", "/session/" + session_ + "/window/rect", {{"width", width}, {"height", height}});
  return w.ok() ? Status::Ok() : w.status();
}

Result<std::string> Browser::Screenshot() {
  auto r = Call("GET", "/session/" + session_ + "/screenshot", nullptr);
  if (!r.ok()) return r.status();
  if (!r->is_string()) return Unavailable("WebDriver screenshot: no image");
  return Base64Decode(r->get<std::string>());
}

Result<nlohmann::json> Browser::ConsoleLog() {
  // chromedriver serves the legacy log endpoint under /se/ in W3C mode.
  return Call("POST", "/session/" + session_ + "/se/log", {{"type", "browser"}});
}

std::string Base64Decode(const std::string& in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = value(c);
    if (v < 0) continue;  // padding, line breaks
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace ferry::testing
