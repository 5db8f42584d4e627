#include "coordinator/dashboard.h"

#include <httplib.h>
#include <zlib.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "coordinator/dashboard_page.h"

namespace ferry {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr int64_t kReuseFactor = 50;      // reuse an answer for 50x its cost…
constexpr int64_t kMaxReuseMs = 15000;    // …but never longer than this
constexpr size_t kMaxCachedAnswers = 16;  // `events N` may name many commands
constexpr size_t kGzipMinBytes = 1024;

const char* const kRangeStates[] = {"pending", "leased", "done", "failed", "stalled"};

std::string ErrorJson(const std::string& message) {
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false,
                                                 nlohmann::json::error_handler_t::replace);
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The cost guard of the header comment: reuse, and one ask per command at a
// time. Shared by the route handlers (httplib threads); guarded by mu_.
class AnswerCache {
 public:
  explicit AnswerCache(StatusAsk ask) : ask_(std::move(ask)) {}

  struct Answer {
    std::shared_ptr<const Result<std::string>> result;
    int64_t age_ms = 0;
  };

  Answer Get(const std::string& command) {
    std::unique_lock<std::mutex> lock(mu_);
    Entry& e = Slot(command);
    // Held while this call refers to `e`, so that Slot() never drops it.
    e.users++;
    struct Release {
      Entry& e;
      ~Release() { e.users--; }
    } release{e};
    const uint64_t seen = e.generation;
    while (true) {
      const auto now = SteadyClock::now();
      if (e.good && now - e.at < e.reuse) {
        return {e.good, std::chrono::duration_cast<std::chrono::milliseconds>(now - e.at).count()};
      }
      if (!e.asking) break;
      // Another request is asking this command: take its answer, good or not.
      cv_.wait(lock, [&] { return !e.asking; });
      if (e.generation != seen) return {e.last, 0};
    }
    e.asking = true;
    lock.unlock();
    const auto t0 = SteadyClock::now();
    auto result = std::make_shared<const Result<std::string>>(ask_(command));
    const auto t1 = SteadyClock::now();
    lock.lock();
    e.asking = false;
    e.generation++;
    e.last = result;
    e.at = t1;
    if (result->ok()) {
      e.good = result;
      e.reuse = std::min<SteadyClock::duration>((t1 - t0) * kReuseFactor,
                                                std::chrono::milliseconds(kMaxReuseMs));
    } else {
      e.good.reset();
    }
    cv_.notify_all();
    return {result, 0};
  }

 private:
  struct Entry {
    bool asking = false;
    int users = 0;                                    // Get() calls referring to it
    uint64_t generation = 0;                          // answers produced so far
    std::shared_ptr<const Result<std::string>> last;  // the latest, good or not
    std::shared_ptr<const Result<std::string>> good;  // the latest if good
    SteadyClock::time_point at;
    SteadyClock::duration reuse{};
  };

  // The entry of `command`, making room by dropping the stalest idle entry.
  Entry& Slot(const std::string& command) {
    auto it = entries_.find(command);
    if (it != entries_.end()) return it->second;
    if (entries_.size() >= kMaxCachedAnswers) {
      auto stalest = entries_.end();
      for (auto i = entries_.begin(); i != entries_.end(); ++i) {
        if (i->second.users == 0 &&
            (stalest == entries_.end() || i->second.at < stalest->second.at))
          stalest = i;
      }
      if (stalest != entries_.end()) entries_.erase(stalest);
    }
    return entries_[command];  // std::map: references stay valid across inserts
  }

  const StatusAsk ask_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> entries_;
};

// True if the request's Accept-Encoding names gzip (without q=0).
bool AcceptsGzip(const httplib::Request& req) {
  std::istringstream in(req.get_header_value("Accept-Encoding"));
  for (std::string item; std::getline(in, item, ',');) {
    const size_t semi = item.find(';');
    std::string name = item.substr(0, semi);
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t") + 1);
    if (name != "gzip") continue;
    if (semi == std::string::npos) return true;
    std::string param = item.substr(semi + 1);
    param.erase(0, param.find_first_not_of(" \t"));
    return !(param.rfind("q=0", 0) == 0 && param.find_first_not_of("q=0.") == std::string::npos);
  }
  return false;
}

// `data` gzip-compressed at zlib's fastest level; nullopt on a zlib error.
std::optional<std::string> Gzip(const std::string& data) {
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return std::nullopt;
  }
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

// Sets the body, gzip-compressed when the client takes it. Served as a sized
// content provider, which httplib sends as it is: left to itself, httplib
// compresses text and JSON with brotli at quality 11, about 0.3 MB/s here —
// seconds for the `ranges` of a big plan.
void SetBody(const httplib::Request& req, httplib::Response& res,
             std::shared_ptr<const std::string> data, const char* content_type) {
  if (data->size() >= kGzipMinBytes && data->size() < (size_t{1} << 31) && AcceptsGzip(req)) {
    if (auto z = Gzip(*data)) {
      data = std::make_shared<const std::string>(std::move(*z));
      res.set_header("Content-Encoding", "gzip");
    }
  }
  res.set_header("Vary", "Accept-Encoding");
  res.set_content_provider(
      data->size(), content_type, [data](size_t offset, size_t length, httplib::DataSink& sink) {
        if (offset >= data->size()) return true;
        return sink.write(data->data() + offset, std::min(length, data->size() - offset));
      });
}

void CommonHeaders(httplib::Response& res) {
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("X-Ferry-Now-Ms", std::to_string(WallMs()));
}

void ReplyJson(const httplib::Request& req, httplib::Response& res, int status,
               std::shared_ptr<const std::string> body) {
  CommonHeaders(res);
  res.status = status;
  SetBody(req, res, std::move(body), "application/json");
}

void ReplyJson(const httplib::Request& req, httplib::Response& res, int status, std::string body) {
  ReplyJson(req, res, status, std::make_shared<const std::string>(std::move(body)));
}

void ReplyAnswer(AnswerCache& cache, const std::string& command, const httplib::Request& req,
                 httplib::Response& res) {
  AnswerCache::Answer a = cache.Get(command);
  if (!a.result->ok()) {
    ReplyJson(req, res, 503,
              ErrorJson("the coordinator did not answer '" + command +
                        "': " + a.result->status().message()));
    return;
  }
  // The cached answer itself, kept alive by the response (no copy).
  std::shared_ptr<const std::string> text(a.result, &a.result->value());
  // The status socket's errors are {"error": …} (ErrorJson there and here).
  const bool refused = text->rfind("{\"error\":", 0) == 0;
  res.set_header("X-Ferry-Answer-Age-Ms", std::to_string(a.age_ms));
  ReplyJson(req, res, refused ? 502 : 200, std::move(text));
}

// `ranges` or `ranges STATE`; "" (and *error set) for a bad ?state=.
std::string RangesCommand(const httplib::Request& req, std::string* error) {
  const std::string state = req.get_param_value("state");
  if (state.empty()) return "ranges";
  for (const char* s : kRangeStates) {
    if (state == s) return "ranges " + state;
  }
  *error = "state must be one of pending, leased, done, failed, stalled";
  return "";
}

// `events` or `events N`; "" (and *error set) for a bad ?n=.
std::string EventsCommand(const httplib::Request& req, std::string* error) {
  const std::string n = req.get_param_value("n");
  if (n.empty()) return "events";
  bool digits = n.size() <= 4;
  for (char c : n) digits = digits && c >= '0' && c <= '9';
  if (!digits || std::stoi(n) < 1 || std::stoi(n) > 1000) {
    *error = "n must be a number of events from 1 to 1000";
    return "";
  }
  return "events " + std::to_string(std::stoi(n));
}

}  // namespace

const std::string& DashboardPage() {
  static const std::string page(kDashboardPage, kDashboardPageSize);
  return page;
}

namespace {
// The page as a body (shared, never freed).
std::shared_ptr<const std::string> PageBody() {
  static const std::shared_ptr<const std::string> body(&DashboardPage(), [](const std::string*) {});
  return body;
}
}  // namespace

void AddDashboardRoutes(httplib::Server& server, StatusAsk ask) {
  auto cache = std::make_shared<AnswerCache>(std::move(ask));
  server.Get("/", [](const httplib::Request& req, httplib::Response& res) {
    CommonHeaders(res);
    // The page may talk to this origin only: nothing from the internet, no
    // framing, no forms.
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                   "frame-ancestors 'none'");
    res.set_header("Referrer-Policy", "no-referrer");
    SetBody(req, res, PageBody(), "text/html; charset=utf-8");
  });
  server.Get("/api/status", [cache](const httplib::Request& req, httplib::Response& res) {
    ReplyAnswer(*cache, "status", req, res);
  });
  server.Get("/api/workers", [cache](const httplib::Request& req, httplib::Response& res) {
    ReplyAnswer(*cache, "workers", req, res);
  });
  server.Get("/api/ranges", [cache](const httplib::Request& req, httplib::Response& res) {
    std::string error;
    const std::string command = RangesCommand(req, &error);
    if (command.empty()) return ReplyJson(req, res, 400, ErrorJson(error));
    ReplyAnswer(*cache, command, req, res);
  });
  server.Get("/api/events", [cache](const httplib::Request& req, httplib::Response& res) {
    std::string error;
    const std::string command = EventsCommand(req, &error);
    if (command.empty()) return ReplyJson(req, res, 400, ErrorJson(error));
    ReplyAnswer(*cache, command, req, res);
  });
}

}  // namespace ferry
