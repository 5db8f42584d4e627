// The live web dashboard on the coordinator's HTTP listener (cpp-httplib).
//
//   GET /             the page: coordinator/dashboard/index.html, embedded in
//                     the binary at build time (inline CSS and JavaScript; it
//                     fetches nothing but /api/* from the same origin)
//   GET /api/status   the status socket's `status` JSON
//   GET /api/ranges   `ranges`, or `ranges STATE` with ?state=pending|leased|
//                     done|failed|stalled
//   GET /api/workers  `workers`
//   GET /api/events   `events`, or `events N` with ?n=1..1000
//
// Read-only by construction: the routes build the command line themselves from
// the fixed names above and a validated parameter, so nothing an HTTP client
// sends can reach `ask` as pause/resume/throttle/drain/revoke or any other
// command. Only GET (and HEAD) are served.
//
// Answers: 200 with exactly the JSON `ask` returned (application/json);
// 400 {"error": …} for a bad ?state= or ?n=; 503 {"error": …} when `ask`
// fails (the coordinator does not answer); 502 with the coordinator's own
// {"error": …} when it answers a command with an error. Every answer carries
// Cache-Control: no-store, X-Ferry-Now-Ms (this host's wall clock, so the page
// can show "seen 3 s ago" whatever the browser's clock says) and
// X-Ferry-Answer-Age-Ms (see below).
//
// Cost guard: an answer is reused for 50 times as long as `ask` took to
// produce it (at most 15 s), and concurrent requests for the same command
// share one `ask`. Cheap commands (`status`: well under a millisecond) are in
// effect always fresh; an expensive one (`ranges` of a 100,000-range plan) is
// asked at most once per 50 of its durations however many browsers poll, so
// the dashboard keeps the coordinator busy for at most ~2% per command.
//
// Thread safety: handlers run on httplib's worker threads; `ask` is called
// from several of them at once and must be safe for that (a fresh ZeroMQ REQ
// socket per call is; so is a query posted to the event loop).
#pragma once

#include <functional>
#include <string>

#include "common/status.h"

namespace httplib {
class Server;
}

namespace ferry {

// Answers one read-only status command (`status`, `ranges [STATE]`,
// `workers`, `events [N]`) with the status socket's JSON for it.
using StatusAsk = std::function<Result<std::string>(const std::string& command)>;

// Registers GET / and GET /api/{status,ranges,workers,events} on `server`.
void AddDashboardRoutes(httplib::Server& server, StatusAsk ask);

// The embedded page (for tests).
const std::string& DashboardPage();

}  // namespace ferry
