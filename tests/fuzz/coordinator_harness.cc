#include "tests/fuzz/coordinator_harness.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/wire.h"

namespace ferry::fuzz {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "fuzz harness: %s\n", what.c_str());
  std::abort();
}

void Exec(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) Die("cannot open " + path);
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string e = err ? err : "?";
    sqlite3_free(err);
    sqlite3_close(db);
    Die("sql on " + path + ": " + e);
  }
  sqlite3_close(db);
}

std::string ScratchDir() {
  std::error_code ec;
  std::string base = std::filesystem::is_directory("/dev/shm", ec) && access("/dev/shm", W_OK) == 0
                         ? "/dev/shm"
                         : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  std::string templ = base + "/ferry-fuzz.XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) Die("mkdtemp in " + base);
  return templ;
}

}  // namespace

CoordinatorHarness& CoordinatorHarness::Get() {
  static CoordinatorHarness* harness = new CoordinatorHarness();  // lives until exit
  return *harness;
}

CoordinatorHarness::CoordinatorHarness() {
  spdlog::set_level(spdlog::level::off);
  dir_ = ScratchDir();
  // Three tables, 60 rows, ranges of 8 rows: integer, composite text and
  // blob keys; some values that are not valid UTF-8.
  Exec(dir_ + "/legacy.db", R"sql(
    CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, score REAL, pic BLOB);
    CREATE TABLE events (tenant TEXT, seq INTEGER, body TEXT, PRIMARY KEY (tenant, seq)) WITHOUT ROWID;
    CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB);
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<30)
    INSERT INTO users SELECT x, 'user ' || x, x * 1.5, randomblob(8) FROM c;
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<20)
    INSERT INTO events SELECT 't' || (x % 3), x, CAST(x'ff00fe' AS TEXT) FROM c;
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<10)
    INSERT INTO kv SELECT randomblob(4), x'00ff' FROM c;)sql");
  Start();
  // Remove the scratch directory when the fuzzer exits normally.
  std::atexit([] {
    CoordinatorHarness& h = Get();
    h.Stop();
    std::error_code ec;
    std::filesystem::remove_all(h.dir_, ec);
  });
}

CoordinatorHarness::~CoordinatorHarness() { Stop(); }

void CoordinatorHarness::Start() {
  ++generation_;
  CoordinatorOptions o;
  o.source_uri = "sqlite:" + dir_ + "/legacy.db";
  o.target_uri = "sqlite:" + dir_ + "/new.db";
  o.state_path = dir_ + "/state.db";
  o.listen = "";  // inproc only
  o.status_endpoint = "inproc://ferry-fuzz-status-" + std::to_string(generation_);
  o.lease_ttl_ms = 1000;
  o.range_rows = 8;
  o.batch_rows = 4;
  o.stall_ms = 2000;
  coordinator_ = std::make_unique<CoordinatorServer>(o, &clock_, &ctx_);
  Status s = coordinator_->Start();
  if (!s.ok()) Die("coordinator start: " + s.message());
  for (size_t i = 0; i < kWorkers; ++i) {
    workers_.emplace_back(ctx_, zmq::socket_type::dealer);
    workers_.back().set(zmq::sockopt::linger, 0);
    workers_.back().connect(coordinator_->inproc_endpoint());
  }
}

void CoordinatorHarness::Stop() {
  workers_.clear();
  coordinator_.reset();
  if (dir_.empty()) return;
  std::error_code ec;
  for (const char* f : {"/state.db", "/state.db-wal", "/state.db-shm", "/state.db.lock", "/new.db",
                        "/new.db-wal", "/new.db-shm"}) {
    std::filesystem::remove(dir_ + f, ec);
  }
}

bool CoordinatorHarness::MaybeReset(int every) {
  if (++calls_ % every != 0 && !coordinator_->complete() && !coordinator_->failed()) return false;
  Stop();
  Start();
  return true;
}

std::string CoordinatorHarness::Command(const std::string& line) {
  std::string reply = coordinator_->HandleCommand(line);
  if (reply.empty()) Die("empty reply to a status command");
  if (reply[0] != '{') {
    if (line.find("metrics") == std::string::npos)
      Die("a reply that is not JSON to a command other than metrics: " + reply.substr(0, 200));
    return reply;
  }
  if (!nlohmann::json::accept(reply))
    Die("status reply is not valid JSON: " + reply.substr(0, 400));
  return reply;
}

std::vector<std::string> CoordinatorHarness::Frames(size_t worker,
                                                    const std::vector<std::string>& frames) {
  std::vector<std::string> replies;
  zmq::socket_t& sock = workers_.at(worker % kWorkers);
  // libFuzzer's -timeout check is a SIGALRM each second: a socket call it
  // interrupts (EINTR) is simply made again.
  auto send = [&](zmq::message_t& m) {
    for (;;) {
      try {
        return sock.send(m, zmq::send_flags::dontwait).has_value();
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
    }
  };
  auto recv = [&](zmq::message_t& r) {
    for (;;) {
      try {
        return sock.recv(r, zmq::recv_flags::dontwait).has_value();
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
      }
    }
  };
  for (const std::string& f : frames) {
    zmq::message_t m(f.data(), f.size());
    if (!send(m)) continue;
    coordinator_->Step(0);
    zmq::message_t r;
    while (recv(r)) {
      if (!DecodeEnvelope(r.data(), r.size()).ok()) Die("a coordinator reply does not decode");
      replies.emplace_back(r.to_string());
    }
  }
  return replies;
}

}  // namespace ferry::fuzz
