// The web dashboard (coordinator/dashboard.h):
// - its routes, in-process with a fake coordinator: content types, no-cache
//   headers, 503/502/400 answers, and that no HTTP request reaches anything
//   but the read-only commands;
// - the /api/… answers of a real coordinator against its status socket's;
// - the page in a real headless Chromium (chromedriver over WebDriver) during
//   a real migration: state, growing table progress, a range the new store
//   refuses shown failed on the range map, the workers, no console errors, a
//   screenshot (also copied to $FERRY_DASHBOARD_SCREENSHOT when set);
// - the page with a synthetic 100,000-range plan: render time, aggregation,
//   and the slots for fields of upcoming capabilities.
// The browser tests skip (saying why) without /usr/bin/chromium and
// /usr/bin/chromedriver.
#include "coordinator/dashboard.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "tests/cluster.h"
#include "tests/process_util.h"
#include "tests/test_util.h"
#include "tests/webdriver.h"

namespace ferry::testing {
namespace {

using nlohmann::json;

// The page's colours (coordinator/dashboard/index.html, COLORS).
constexpr const char* kFailedColor = "#d93636";

// ------------------------------------------------------------ fake coordinator --

// Answers the read-only commands from canned JSON and records every command
// it was asked. Thread-safe (httplib calls it from several threads).
class FakeCoordinator {
 public:
  void Set(const std::string& command, const std::string& answer) {
    std::lock_guard<std::mutex> l(mu_);
    answers_[command] = answer;
  }
  void SetUnavailable(bool down) {
    std::lock_guard<std::mutex> l(mu_);
    down_ = down;
  }
  std::vector<std::string> Asked() {
    std::lock_guard<std::mutex> l(mu_);
    return asked_;
  }
  Result<std::string> Ask(const std::string& command) {
    std::lock_guard<std::mutex> l(mu_);
    asked_.push_back(command);
    if (down_) return Unavailable("no answer from tcp://127.0.0.1:1 within 3000 ms");
    auto it = answers_.find(command);
    if (it == answers_.end()) return std::string(R"({"error": "unknown command"})");
    return it->second;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> answers_;
  std::vector<std::string> asked_;
  bool down_ = false;
};

// An httplib server on 127.0.0.1:<free port> serving the dashboard routes.
class DashboardServer {
 public:
  explicit DashboardServer(StatusAsk ask) {
    AddDashboardRoutes(server_, std::move(ask));
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    WaitFor([&] { return server_.is_running(); }, 5000);
  }
  ~DashboardServer() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::string url() const { return fmt::format("http://127.0.0.1:{}/", port_); }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

const std::set<std::string> kReadOnly = {"status",        "workers",        "events",
                                         "ranges",        "ranges pending", "ranges done",
                                         "ranges leased", "ranges failed",  "ranges stalled"};

bool IsReadOnly(const std::string& command) {
  if (kReadOnly.count(command)) return true;
  // events N
  if (command.rfind("events ", 0) != 0) return false;
  std::string n = command.substr(7);
  return !n.empty() && n.find_first_not_of("0123456789") == std::string::npos;
}

TEST(DashboardRoutesTest, ServesTheSelfContainedPage) {
  FakeCoordinator fake;
  DashboardServer s([&](const std::string& c) { return fake.Ask(c); });
  httplib::Client cli("127.0.0.1", s.port());
  auto res = cli.Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(res->get_header_value("Cache-Control"), "no-store");
  EXPECT_NE(res->get_header_value("Content-Security-Policy").find("default-src 'none'"),
            std::string::npos);
  EXPECT_EQ(res->body, DashboardPage());
  EXPECT_NE(res->body.find("<canvas id=\"map\""), std::string::npos);
  // Nothing fetched from anywhere else: no absolute URL in the page at all.
  EXPECT_EQ(res->body.find("http://"), std::string::npos);
  EXPECT_EQ(res->body.find("https://"), std::string::npos);
  EXPECT_EQ(res->body.find("<script src"), std::string::npos);
  EXPECT_EQ(res->body.find("<link rel=\"stylesheet\""), std::string::npos);
  EXPECT_TRUE(fake.Asked().empty()) << "the page itself asks the coordinator nothing";
}

TEST(DashboardRoutesTest, ApiAnswersAreTheCoordinatorsJson) {
  FakeCoordinator fake;
  fake.Set("status", R"({"state":"copying","rows_copied":5})");
  fake.Set("ranges", R"({"ranges":[{"id":1}]})");
  fake.Set("ranges failed", R"({"ranges":[]})");
  fake.Set("workers", R"({"workers":[]})");
  fake.Set("events", R"({"events":[{"kind":"plan"}]})");
  fake.Set("events 7", R"({"events":[]})");
  DashboardServer s([&](const std::string& c) { return fake.Ask(c); });
  httplib::Client cli("127.0.0.1", s.port());
  const std::pair<const char*, const char*> cases[] = {
      {"/api/status", "status"},
      {"/api/ranges", "ranges"},
      {"/api/ranges?state=failed", "ranges failed"},
      {"/api/workers", "workers"},
      {"/api/events", "events"},
      {"/api/events?n=7", "events 7"}};
  for (const auto& [path, command] : cases) {
    auto res = cli.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json") << path;
    EXPECT_EQ(res->get_header_value("Cache-Control"), "no-store") << path;
    EXPECT_FALSE(res->get_header_value("X-Ferry-Now-Ms").empty()) << path;
    EXPECT_EQ(res->body, *fake.Ask(command)) << path;
  }
  // A big answer goes gzip-compressed to a client that takes it.
  std::string big = R"({"ranges":[)";
  for (int i = 0; i < 2000; ++i) big += fmt::format(R"({}{{"id":{}}})", i ? "," : "", i + 1);
  big += "]}";
  fake.Set("ranges leased", big);
  auto gz = cli.Get("/api/ranges?state=leased", {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(gz);
  EXPECT_EQ(gz->get_header_value("Content-Encoding"), "gzip");
  EXPECT_EQ(gz->body, big) << "httplib's client inflates it";
  auto plain = cli.Get("/api/ranges?state=leased", {{"Accept-Encoding", "gzip;q=0"}});
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->get_header_value("Content-Encoding"), "");
  EXPECT_EQ(plain->body, big);
}

TEST(DashboardRoutesTest, OnlyReadOnlyCommandsReachTheCoordinator) {
  FakeCoordinator fake;
  fake.Set("status", R"({"state":"copying"})");
  DashboardServer s([&](const std::string& c) { return fake.Ask(c); });
  httplib::Client cli("127.0.0.1", s.port());
  struct Case {
    const char* path;
    int status;
  };
  const Case bad_params[] = {{"/api/ranges?state=pause", 400},
                             {"/api/ranges?state=leased%0Apause", 400},
                             {"/api/ranges?state=leased%20x", 400},
                             {"/api/events?n=0", 400},
                             {"/api/events?n=1001", 400},
                             {"/api/events?n=5%0Apause", 400},
                             {"/api/events?n=-3", 400},
                             {"/api/events?n=99999999999999999999", 400},
                             {"/api/pause", 404},
                             {"/api/resume", 404},
                             {"/api/throttle?rate=5", 404},
                             {"/api/drain", 404},
                             {"/api/revoke", 404},
                             {"/api/metrics/../pause", 404},
                             {"/api/status/pause", 404}};
  for (const Case& c : bad_params) {
    auto res = cli.Get(c.path);
    ASSERT_TRUE(res) << c.path;
    EXPECT_EQ(res->status, c.status) << c.path;
    if (c.status == 400) {
      auto j = json::parse(res->body, nullptr, false);
      EXPECT_TRUE(j.is_object() && j.contains("error")) << c.path << ": " << res->body;
      EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
    }
  }
  for (const char* path : {"/api/status", "/api/ranges", "/"}) {
    for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
      httplib::Result res{nullptr, httplib::Error::Unknown};
      if (std::string(method) == "POST") res = cli.Post(path, "pause", "text/plain");
      if (std::string(method) == "PUT") res = cli.Put(path, "pause", "text/plain");
      if (std::string(method) == "DELETE") res = cli.Delete(path);
      if (std::string(method) == "PATCH") res = cli.Patch(path, "pause", "text/plain");
      ASSERT_TRUE(res) << method << " " << path;
      EXPECT_GE(res->status, 400) << method << " " << path;
    }
  }
  // The same read-only commands, with and without parameters.
  for (const char* path : {"/api/status", "/api/ranges?state=stalled", "/api/events?n=12",
                           "/api/workers?cmd=pause", "/api/status?pause=1"}) {
    auto res = cli.Get(path);
    ASSERT_TRUE(res) << path;
  }
  const auto asked = fake.Asked();
  EXPECT_FALSE(asked.empty());
  for (const std::string& c : asked) EXPECT_TRUE(IsReadOnly(c)) << "asked '" << c << "'";
}

TEST(DashboardRoutesTest, NoAnswerIs503AndAnErrorAnswerIs502) {
  FakeCoordinator fake;
  DashboardServer s([&](const std::string& c) { return fake.Ask(c); });
  httplib::Client cli("127.0.0.1", s.port());
  fake.SetUnavailable(true);
  for (const char* path : {"/api/status", "/api/ranges", "/api/workers", "/api/events"}) {
    auto res = cli.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 503) << path;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
    auto j = json::parse(res->body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << res->body;
    EXPECT_NE(j.value("error", "").find("did not answer"), std::string::npos) << res->body;
  }
  fake.SetUnavailable(false);
  fake.Set("status", R"({"state":"copying"})");
  auto ok = cli.Get("/api/status");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << "a failed ask is not reused";
  // `workers` is not set: the fake answers like the status socket does to a
  // command it refuses.
  auto refused = cli.Get("/api/workers");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 502);
  EXPECT_EQ(refused->body, R"({"error": "unknown command"})");
}

TEST(DashboardRoutesTest, ConcurrentPollersShareOneAskOfAnExpensiveCommand) {
  std::mutex mu;
  int asks = 0;
  DashboardServer s([&](const std::string& c) -> Result<std::string> {
    {
      std::lock_guard<std::mutex> l(mu);
      ++asks;
    }
    // An expensive answer (a big plan): 100 ms.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return std::string(R"({"ranges":[]})") + (c == "ranges" ? "" : " ");
  });
  std::vector<std::thread> pollers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i) {
    pollers.emplace_back([&] {
      httplib::Client cli("127.0.0.1", s.port());
      auto res = cli.Get("/api/ranges");
      if (res && res->status == 200) ok++;
    });
  }
  for (auto& t : pollers) t.join();
  EXPECT_EQ(ok.load(), 6);
  // At most a few asks overlap the first (6 pollers, 100 ms each without sharing).
  EXPECT_LE(asks, 2);
  // Asked again right away: the 100 ms answer is reused (for up to 5 s).
  httplib::Client cli("127.0.0.1", s.port());
  auto res = cli.Get("/api/ranges");
  ASSERT_TRUE(res);
  EXPECT_LE(asks, 2);
  EXPECT_FALSE(res->get_header_value("X-Ferry-Answer-Age-Ms").empty());
}

// --------------------------------------------------- a real coordinator's /api --

int HttpPort(const std::string& endpoints_file) {
  int port = 0;
  WaitFor(
      [&] {
        auto j = json::parse(ReadFile(endpoints_file), nullptr, false);
        if (j.is_object()) port = j.value("http_port", 0);
        return port > 0;
      },
      20000);
  return port;
}

std::set<std::string> Keys(const json& j) {
  std::set<std::string> k;
  for (auto it = j.begin(); it != j.end(); ++it) k.insert(it.key());
  return k;
}

// The legacy store of the live tests: `accounts` and `orders`, `rows` each.
void MakeShop(const std::string& path, int rows) {
  ExecSql(path,
          fmt::format("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT, balance REAL);"
                      "CREATE TABLE orders (id INTEGER PRIMARY KEY, account INTEGER, note TEXT);"
                      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{0}) "
                      "INSERT INTO accounts SELECT x, 'account ' || x, x * 0.25 FROM c;"
                      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{0}) "
                      "INSERT INTO orders SELECT x, x % 997, hex(randomblob(24)) FROM c;",
                      rows));
}

TEST(DashboardApiTest, AnswersEqualTheStatusSocket) {
  TempDir dir;
  Cluster c(dir.path());
  MakeShop(c.legacy, 10000);
  const std::string ef = dir.File("endpoints.json");
  auto coord = c.StartCoordinator({"--http-listen", "127.0.0.1:0", "--endpoints-file", ef,
                                   "--range-rows", "1000", "--batch-rows", "200"});
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  c.Command("throttle 3000");  // still copying while we compare
  const int port = HttpPort(ef);
  ASSERT_GT(port, 0) << c.Logs();
  auto a = c.StartWorker("a");
  auto b = c.StartWorker("b");
  ASSERT_TRUE(WaitFor([&] { return c.Status().value("rows_copied", 0) > 0; }, 30000)) << c.Logs();

  httplib::Client cli("127.0.0.1", port);
  auto both = [&](const std::string& path, const std::string& command, json* http, json* sock) {
    auto res = cli.Get(path.c_str());
    ASSERT_TRUE(res) << path;
    ASSERT_EQ(res->status, 200) << path << ": " << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
    *http = json::parse(res->body, nullptr, false);
    *sock = json::parse(c.Command(command), nullptr, false);  // asked after: never older
    ASSERT_TRUE(http->is_object()) << res->body;
    ASSERT_TRUE(sock->is_object()) << command;
    EXPECT_EQ(Keys(*http), Keys(*sock)) << path;
  };
  json h, s;
  both("/api/status", "status", &h, &s);
  for (const char* k : {"rows_copied", "bytes_copied", "ranges_done", "last_epoch",
                        "uptime_seconds", "ranges_total"}) {
    EXPECT_LE(h[k].get<int64_t>(), s[k].get<int64_t>()) << k << " went backwards";
  }
  for (const char* k :
       {"ranges_total", "from_version", "to_version", "plan_id", "source", "target", "version"}) {
    EXPECT_EQ(h[k], s[k]) << k;
  }
  EXPECT_EQ(h["state"], "copying");

  both("/api/ranges", "ranges", &h, &s);
  ASSERT_EQ(h["ranges"].size(), s["ranges"].size());
  ASSERT_GT(h["ranges"].size(), 10u);
  for (size_t i = 0; i < h["ranges"].size(); ++i) {
    const json& hr = h["ranges"][i];
    const json& sr = s["ranges"][i];
    EXPECT_EQ(Keys(hr), Keys(sr));
    EXPECT_EQ(hr["id"], sr["id"]);
    EXPECT_EQ(hr["lo"], sr["lo"]);
    EXPECT_EQ(hr["hi"], sr["hi"]);
    EXPECT_LE(hr["rows"].get<int64_t>(), sr["rows"].get<int64_t>()) << hr.dump();
    if (hr["state"] == "done") {
      EXPECT_EQ(sr["state"], "done") << sr.dump();
    }
  }
  EXPECT_TRUE(h["ranges"][0].contains("est_rows")) << "the page's per-table estimate";

  both("/api/ranges?state=done", "ranges done", &h, &s);
  EXPECT_LE(h["ranges"].size(), s["ranges"].size());
  for (const json& r : h["ranges"]) EXPECT_EQ(r["state"], "done");

  both("/api/workers", "workers", &h, &s);
  ASSERT_EQ(h["workers"].size(), 2u);
  ASSERT_EQ(s["workers"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(Keys(h["workers"][i]), Keys(s["workers"][i]));
    EXPECT_EQ(h["workers"][i]["id"], s["workers"][i]["id"]);
    EXPECT_LE(h["workers"][i]["rows"].get<int64_t>(), s["workers"][i]["rows"].get<int64_t>());
  }

  both("/api/events?n=3", "events 3", &h, &s);
  ASSERT_EQ(h["events"].size(), 3u);
  ASSERT_EQ(s["events"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(Keys(h["events"][i]), Keys(s["events"][i]));
  EXPECT_LE(h["events"][0]["ts_ms"].get<int64_t>(), s["events"][0]["ts_ms"].get<int64_t>());
  both("/api/events", "events", &h, &s);
  EXPECT_GE(h["events"].size(), 3u);

  // Nothing asked over HTTP changed the migration: still throttled, not paused.
  auto st = c.Status();
  EXPECT_EQ(st.value("throttle_rows_per_second", 0), 3000);
  EXPECT_FALSE(st.value("paused", true));
  c.Command("throttle off");
  ASSERT_TRUE(c.WaitState("complete", 60000)) << c.Logs();
  EXPECT_EQ(CompareSqliteStores(c.legacy, c.target), "");
}

// ----------------------------------------------------------------- in a browser --

// The colour drawn on the range map at range `id` ("#rrggbb"), or "" if the
// page does not show that range.
std::string MapColor(Browser& b, uint64_t id) {
  auto r = b.Execute(R"(
      const p = window.ferryDashboard && ferryDashboard.rangePixel(arguments[0]);
      if (!p) return '';
      const d = document.getElementById('map').getContext('2d').getImageData(p.x, p.y, 1, 1).data;
      return '#' + [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, '0')).join('');)",
                     json::array({id}));
  return r.ok() && r->is_string() ? r->get<std::string>() : "";
}

// The browser console's errors (SEVERE entries).
std::vector<std::string> ConsoleErrors(Browser& b) {
  std::vector<std::string> out;
  auto log = b.ConsoleLog();
  if (!log.ok()) {
    out.push_back("cannot read the console: " + log.status().message());
    return out;
  }
  for (const json& e : *log) {
    if (e.value("level", "") == "SEVERE") out.push_back(e.value("message", e.dump()));
  }
  return out;
}

// Writes the screenshot into `dir` and, with FERRY_DASHBOARD_SCREENSHOT set,
// copies it there.
void SaveScreenshot(Browser& b, const std::string& dir) {
  auto png = b.Screenshot();
  ASSERT_TRUE(png.ok()) << png.status().ToString();
  ASSERT_GT(png->size(), 1000u);
  ASSERT_EQ(png->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const std::string path = dir + "/dashboard.png";
  std::ofstream(path, std::ios::binary) << *png;
  EXPECT_EQ(std::filesystem::file_size(path), png->size());
  if (const char* keep = std::getenv("FERRY_DASHBOARD_SCREENSHOT"); keep && *keep) {
    std::filesystem::copy_file(path, keep, std::filesystem::copy_options::overwrite_existing);
    std::cout << "dashboard screenshot: " << keep << "\n";
  }
}

// What the page shows about itself, for failure messages: the connection
// line, the state, the page's timings and the console so far.
std::string PageDiagnostics(Browser& b) {
  auto r = b.Execute(
      "return {conn: document.getElementById('conn').textContent,"
      " state: document.getElementById('state').textContent,"
      " dashboard: !!window.ferryDashboard,"
      " timings: window.ferryDashboard ? ferryDashboard.timings : null,"
      " ranges: window.ferryDashboard ? ferryDashboard.rangeCount() : null}");
  auto log = b.ConsoleLog();
  return "page: " + (r.ok() ? r->dump() : r.status().ToString()) +
         "\nconsole: " + (log.ok() ? log->dump() : log.status().ToString());
}

int64_t TableRows(Browser& b, const std::string& table) {
  auto r = b.Execute(
      "const e = document.querySelector(`.trow[data-table=\"${arguments[0]}\"]`);"
      "return e ? Number(e.dataset.rows) : -1;",
      json::array({table}));
  return r.ok() && r->is_number() ? r->get<int64_t>() : -1;
}

TEST(DashboardBrowserTest, LiveMigrationShowsStateProgressAFailedRangeAndWorkers) {
  if (std::string m = Browser::Missing(); !m.empty()) GTEST_SKIP() << m;
  TempDir dir;
  Cluster c(dir.path());
  // With FERRY_DASHBOARD_SCREENSHOT set (the README's picture), a longer run
  // with more ranges and workers, so that the picture has more to show.
  const char* keep = std::getenv("FERRY_DASHBOARD_SCREENSHOT");
  const bool showcase = keep && *keep;
  const int kRows = showcase ? 60000 : 24000, kBadOrder = showcase ? 33333 : 7777;
  const int kWorkers = showcase ? 3 : 2;
  MakeShop(c.legacy, kRows);
  // The new store refuses one order for good: a trigger's RAISE(ABORT) is a
  // constraint error, which the worker reports as permanent, and with
  // --max-attempts 1 its range fails at the first report.
  ExecSql(c.target,
          fmt::format("CREATE TABLE orders (id INTEGER PRIMARY KEY, account INTEGER, note TEXT);"
                      "CREATE TRIGGER refuse_order BEFORE INSERT ON orders WHEN NEW.id = {0} "
                      "BEGIN SELECT RAISE(ABORT, 'order {0} refused by the test'); END;",
                      kBadOrder));
  const std::string ef = dir.File("endpoints.json");
  auto coord = c.StartCoordinator({"--http-listen", "127.0.0.1:0", "--endpoints-file", ef,
                                   "--range-rows", showcase ? "1500" : "2000", "--batch-rows",
                                   "200", "--max-attempts", "1"});
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  // ~3000 rows/s: the failing row is reached after ~10 s, the end after ~16 s
  // (showcase: ~20 s and ~40 s).
  c.Command("throttle 3000");
  const int port = HttpPort(ef);
  ASSERT_GT(port, 0) << c.Logs();

  auto browser = Browser::Start(dir.path(), 1440, 1000);
  ASSERT_TRUE(browser.ok()) << browser.status().ToString();
  Browser& b = **browser;
  const std::string origin = fmt::format("http://127.0.0.1:{}", port);
  ASSERT_TRUE(b.Navigate(origin + "/").ok());
  std::vector<std::unique_ptr<Process>> workers;
  json worker_ids = json::array();
  for (int i = 1; i <= kWorkers; ++i) {
    workers.push_back(c.StartWorker(fmt::format("w{}", i)));
    worker_ids.push_back(fmt::format("w{}", i));
  }

  // The state.
  ASSERT_TRUE(
      b.WaitTrue("return document.getElementById('state').textContent === 'copying'", 20000))
      << PageDiagnostics(b);
  // The workers.
  EXPECT_TRUE(
      b.WaitTrue(fmt::format("return document.querySelectorAll('#workers tr[data-worker]').length"
                             " == {}",
                             kWorkers),
                 20000))
      << c.Logs();
  auto ids = b.Execute(
      "return [...document.querySelectorAll('#workers tr[data-worker]')]"
      ".map((r) => r.dataset.worker).sort()");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, worker_ids);

  // A table's progress grows between two snapshots, and never shows more
  // rows than the new store holds.
  ASSERT_TRUE(
      b.WaitTrue("const e = document.querySelector('.trow[data-table=\"accounts\"]');"
                 "return !!e && Number(e.dataset.rows) > 0",
                 30000));
  const int64_t first = TableRows(b, "accounts");
  EXPECT_LE(first, QueryInt(c.target, "SELECT count(*) FROM accounts"));
  auto canvas_failed = b.Execute("return document.getElementById('map').dataset.failed");
  ASSERT_TRUE(canvas_failed.ok());
  EXPECT_EQ(*canvas_failed, "") << "no range failed yet";
  int64_t second = first;
  EXPECT_TRUE(WaitFor(
      [&] {
        second = TableRows(b, "accounts");
        return second > first;
      },
      20000))
      << "first " << first << ", second " << second;
  EXPECT_LE(second, QueryInt(c.target, "SELECT count(*) FROM accounts"));

  // The refused row's range fails; the map shows it in the failed colour.
  ASSERT_TRUE(WaitFor([&] { return c.Status().value("ranges_failed", 0) == 1; }, 60000))
      << c.Logs();
  auto failed = json::parse(c.Command("ranges failed"), nullptr, false);
  ASSERT_EQ(failed["ranges"].size(), 1u) << failed.dump();
  const uint64_t failed_id = failed["ranges"][0]["id"];
  EXPECT_EQ(failed["ranges"][0]["table"], "orders");
  std::string color;
  EXPECT_TRUE(WaitFor(
      [&] {
        color = MapColor(b, failed_id);
        return color == kFailedColor;
      },
      15000))
      << "range " << failed_id << " is drawn " << color;
  // Hovering the failed range names it and its error.
  auto tip = b.Execute(R"(
      const p = ferryDashboard.rangePixel(arguments[0]);
      const map = document.getElementById('map');
      const r = map.getBoundingClientRect();
      const dpr = window.devicePixelRatio || 1;
      map.dispatchEvent(new MouseEvent('mousemove',
          {clientX: r.left + p.x / dpr, clientY: r.top + p.y / dpr, bubbles: true}));
      const tip = document.getElementById('tip');
      return tip.hidden ? '' : tip.textContent;)",
                       json::array({failed_id}));
  ASSERT_TRUE(tip.ok()) << tip.status().ToString();
  EXPECT_NE(tip->get<std::string>().find(fmt::format("#{} · orders", failed_id)), std::string::npos)
      << *tip;
  EXPECT_NE(tip->get<std::string>().find("refused by the test"), std::string::npos) << *tip;
  EXPECT_NE(tip->get<std::string>().find("failed"), std::string::npos) << *tip;
  ASSERT_TRUE(
      b.Execute("document.getElementById('map').dispatchEvent(new MouseEvent('mouseleave'))").ok());
  // Clicking it pins its details under the map.
  auto detail = b.Execute(R"(
      const p = ferryDashboard.rangePixel(arguments[0]);
      const map = document.getElementById('map');
      const r = map.getBoundingClientRect();
      const dpr = window.devicePixelRatio || 1;
      map.dispatchEvent(new MouseEvent('click',
          {clientX: r.left + p.x / dpr, clientY: r.top + p.y / dpr, bubbles: true}));
      const d = document.getElementById('detail');
      return d.hidden ? '' : d.textContent;)",
                          json::array({failed_id}));
  ASSERT_TRUE(detail.ok()) << detail.status().ToString();
  EXPECT_NE(detail->get<std::string>().find("refused by the test"), std::string::npos) << *detail;

  // The screenshot, mid-migration with the failed range on the map, pinned.
  ASSERT_TRUE(b.FitWindowToPage(1440).ok());
  SaveScreenshot(b, dir.path());

  // The rest copies; the migration ends failed, and the page says so.
  c.Command("throttle off");
  ASSERT_TRUE(c.WaitState("failed", 60000)) << c.Logs();
  EXPECT_TRUE(
      b.WaitTrue("return document.getElementById('state').textContent === 'failed'", 10000));
  EXPECT_TRUE(
      b.WaitTrue("const e = document.getElementById('banner');"
                 "return !e.hidden && e.textContent.includes('refused by the test')",
                 10000));
  EXPECT_EQ(MapColor(b, failed_id), kFailedColor);

  // The page fetched nothing but its own origin, and the console has no errors.
  auto resources = b.Execute(
      "return performance.getEntriesByType('resource').map((e) => e.name)"
      ".concat(performance.getEntriesByType('navigation').map((e) => e.name))");
  ASSERT_TRUE(resources.ok());
  EXPECT_GT(resources->size(), 5u);
  for (const json& r : *resources) {
    EXPECT_EQ(r.get<std::string>().rfind(origin + "/", 0), 0u) << r;
  }
  EXPECT_EQ(ConsoleErrors(b), std::vector<std::string>());
}

// A plan of 100,000 ranges over 5 tables (the coordinator's `ranges` format),
// some done, some leased, three failed.
struct BigPlan {
  std::string all, leased, failed;
  json status;
  std::vector<uint64_t> failed_ids = {20500, 61234, 99999};
};

BigPlan MakeBigPlan() {
  BigPlan p;
  const int kTables = 5, kPerTable = 20000;
  fmt::memory_buffer all, leased, failed;
  auto open = [](fmt::memory_buffer& b) {
    fmt::format_to(std::back_inserter(b), "{{\"ranges\":[");
  };
  open(all);
  open(leased);
  open(failed);
  uint64_t counts[4] = {0, 0, 0, 0};  // pending leased done failed
  uint64_t rows = 0;
  bool first_l = true, first_f = true;
  for (int t = 0; t < kTables; ++t) {
    for (int i = 0; i < kPerTable; ++i) {
      const uint64_t id = static_cast<uint64_t>(t) * kPerTable + i + 1;
      const char* state = id <= 55000 ? "done" : (id <= 55040 ? "leased" : "pending");
      std::string err;
      for (uint64_t f : p.failed_ids) {
        if (id == f) {
          state = "failed";
          err = "insert into t: CHECK constraint failed";
        }
      }
      const int s = std::string(state) == "pending"  ? 0
                    : std::string(state) == "leased" ? 1
                    : std::string(state) == "done"   ? 2
                                                     : 3;
      counts[s]++;
      const uint64_t r = s == 2 ? 100 : (s == 1 ? 40 : 0);
      rows += r;
      const std::string one = fmt::format(
          R"j({{"id":{},"table":"table_{}","lo":"({})","hi":"({})","state":"{}","owner":"{}",)j"
          R"j("epoch":{},"deadline_ms":0,"cursor":"{}","rows":{},"est_rows":100,"bytes":{},)j"
          R"j("attempts":1,"errors":{},"last_error":"{}"}})j",
          id, t, i * 100, (i + 1) * 100, state, s == 1 ? fmt::format("w{}", id % 40) : "", id,
          r ? fmt::format("({})", i * 100 + r) : "", r, r * 60, err.empty() ? 0 : 1, err);
      fmt::format_to(std::back_inserter(all), "{}{}", id == 1 ? "" : ",", one);
      if (s == 1) {
        fmt::format_to(std::back_inserter(leased), "{}{}", first_l ? "" : ",", one);
        first_l = false;
      }
      if (s == 3) {
        fmt::format_to(std::back_inserter(failed), "{}{}", first_f ? "" : ",", one);
        first_f = false;
      }
    }
  }
  for (auto* b : {&all, &leased, &failed}) fmt::format_to(std::back_inserter(*b), "]}}");
  p.all = fmt::to_string(all);
  p.leased = fmt::to_string(leased);
  p.failed = fmt::to_string(failed);
  p.status = {{"state", "copying"},
              {"from_version", 1},
              {"to_version", 2},
              {"current_version", nullptr},
              {"ranges_total", 100000},
              {"ranges_pending", counts[0]},
              {"ranges_leased", counts[1]},
              {"ranges_done", counts[2]},
              {"ranges_failed", counts[3]},
              {"ranges_stalled", 0},
              {"rows_copied", rows},
              {"bytes_copied", rows * 60},
              {"rows_estimated", 10000000},
              {"rows_per_second", 25000},
              {"eta_seconds", 400},
              {"workers_live", 40},
              {"boundary", "table_0 (100)"},
              {"paused", false},
              {"throttle_rows_per_second", 0},
              {"failure", ""},
              {"last_error", ""},
              {"plan_id", "synthetic"},
              {"last_epoch", 100000},
              {"source", "sqlite:/legacy.db"},
              {"target", "sqlite:/new.db"},
              {"uptime_seconds", 60},
              {"version", "test"}};
  return p;
}

TEST(DashboardBrowserTest, HundredThousandRangesRenderQuicklyAndSlotsAppearWithTheirFields) {
  if (std::string m = Browser::Missing(); !m.empty()) GTEST_SKIP() << m;
  TempDir dir;
  const BigPlan plan = MakeBigPlan();
  FakeCoordinator fake;
  fake.Set("status", plan.status.dump());
  fake.Set("ranges", plan.all);
  fake.Set("ranges leased", plan.leased);
  fake.Set("ranges failed", plan.failed);
  fake.Set("workers", R"({"workers":[]})");
  fake.Set("events 40", R"({"events":[]})");
  DashboardServer s([&](const std::string& c) { return fake.Ask(c); });

  auto browser = Browser::Start(dir.path(), 1440, 1000);
  ASSERT_TRUE(browser.ok()) << browser.status().ToString();
  Browser& b = **browser;
  ASSERT_TRUE(b.Navigate(s.url()).ok());
  ASSERT_TRUE(b.WaitTrue(
      "return ferryDashboard.rangeCount() === 100000 && ferryDashboard.timings.renderMs > 0",
      60000))
      << PageDiagnostics(b);
  auto t = b.Execute("return ferryDashboard.timings");
  ASSERT_TRUE(t.ok());
  const double fetch_ms = (*t)["fetchMs"], parse_ms = (*t)["parseMs"], ingest_ms = (*t)["ingestMs"],
               render_ms = (*t)["renderMs"];
  std::cout << fmt::format(
      "100,000 ranges ({:.1f} MB of JSON): fetch {:.0f} ms, JSON.parse {:.0f} ms, ingest {:.0f} "
      "ms, render {:.0f} ms\n",
      plan.all.size() / 1e6, fetch_ms, parse_ms, ingest_ms, render_ms);
  RecordProperty("render_ms_100k", std::to_string(render_ms));
  RecordProperty("parse_ms_100k", std::to_string(parse_ms));
  EXPECT_LT(render_ms, 1000) << "rendering 100,000 ranges must not freeze the page";
  EXPECT_LT(parse_ms + ingest_ms + render_ms, 2000);
  for (uint64_t id : plan.failed_ids) EXPECT_EQ(MapColor(b, id), kFailedColor) << id;
  auto layout = b.Execute("return ferryDashboard.layout()");
  ASSERT_TRUE(layout.ok());
  std::cout << "map layout at 1440 px: " << layout->dump() << "\n";

  // Narrow: more ranges than pixels; cells aggregate, failures stay visible.
  auto narrow = b.Execute(R"(
      document.querySelector('main').style.maxWidth = '360px';
      window.dispatchEvent(new Event('resize'));
      return true;)");
  ASSERT_TRUE(narrow.ok());
  EXPECT_TRUE(b.WaitTrue("return ferryDashboard.layout().per > 1", 10000))
      << b.Execute("return ferryDashboard.layout()")->dump();
  const double max_render = (*b.Execute("return ferryDashboard.timings.maxRenderMs")).get<double>();
  EXPECT_LT(max_render, 1000);
  for (uint64_t id : plan.failed_ids) EXPECT_EQ(MapColor(b, id), kFailedColor) << id;
  auto legend = b.Execute("return document.getElementById('legend').textContent");
  ASSERT_TRUE(legend.ok());
  EXPECT_NE(legend->get<std::string>().find("1 cell = "), std::string::npos) << *legend;
  ASSERT_TRUE(b.Execute("document.querySelector('main').style.maxWidth = '';"
                        "window.dispatchEvent(new Event('resize')); return true")
                  .ok());

  // Slots of upcoming capabilities: hidden without their fields…
  for (const char* slot : {"slot-online", "slot-verify", "slot-rejects"}) {
    auto hidden = b.Execute(fmt::format("return document.getElementById('{}').hidden", slot));
    ASSERT_TRUE(hidden.ok());
    EXPECT_EQ(*hidden, true) << slot;
  }
  // …shown with them.
  json online = plan.status;
  online["state"] = "catching_up";
  online["changes_pending"] = 120;
  online["changes_applied"] = 5000;
  online["lag_seconds"] = 3;
  online["ranges_verified"] = 10;
  online["rows_repaired"] = 2;
  online["rows_rejected"] = 4;
  fake.Set("status", online.dump());
  EXPECT_TRUE(
      b.WaitTrue("return !document.getElementById('slot-online').hidden &&"
                 " !document.getElementById('slot-verify').hidden &&"
                 " !document.getElementById('slot-rejects').hidden &&"
                 " document.getElementById('state').textContent === 'catching_up'",
                 10000));
  auto texts = b.Execute(
      "return ['online-lag', 'online-sub', 'verify-value', 'verify-sub', 'rejects-value']"
      ".map((id) => document.getElementById(id).textContent)");
  ASSERT_TRUE(texts.ok());
  EXPECT_EQ(*texts, json::array({"lag 3s", "120 pending · 5,000 applied", "10 / 100,000",
                                 "ranges verified · 2 rows repaired", "4"}));
  // A standby names the active coordinator.
  fake.Set("status", R"({"state":"standby","leader":"tcp://10.1.2.3:7401"})");
  EXPECT_TRUE(
      b.WaitTrue("const e = document.getElementById('banner');"
                 "return !e.hidden && e.textContent.includes('tcp://10.1.2.3:7401') &&"
                 " document.body.classList.contains('standby')",
                 10000));
  EXPECT_EQ(ConsoleErrors(b), std::vector<std::string>());
  for (const std::string& c : fake.Asked()) EXPECT_TRUE(IsReadOnly(c)) << "asked '" << c << "'";
}

}  // namespace
}  // namespace ferry::testing
