// 100,000 random, malformed, empty, huge (1 MiB), multi-frame and binary
// command frames to the status socket of a coordinator process in the middle
// of a migration: each is answered with a JSON error (or the valid answer),
// the coordinator stays up, and the migration completes.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <zmq.hpp>

#include "tests/cluster.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

TEST(StatusFloodTest, HundredThousandHostileCommandsWhileMigrating) {
  TempDir dir;
  Cluster c(dir.path());
  ExecSql(c.legacy,
          "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);"
          "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<60000) "
          "INSERT INTO t SELECT x, randomblob(50) FROM c;");
  auto coord = c.StartCoordinator({"--batch-rows", "300", "--range-rows", "5000"});
  ASSERT_TRUE(c.WaitState("copying", 20000)) << c.Logs();
  c.Command("throttle 4000");  // keep the migration running during the flood
  auto a = c.StartWorker("a");
  auto b = c.StartWorker("b");

  zmq::context_t ctx;
  zmq::socket_t req(ctx, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.set(zmq::sockopt::rcvtimeo, 5000);
  req.connect(c.status_endpoint());
  std::mt19937_64 rng(42);
  const char* words[] = {"status",       "ranges",      "workers", "metrics", "help",
                         "throttle",     "drain",       "revoke",  "pause ",  "events",
                         "ranges bogus", "throttle -1", "revoke x"};
  int errors = 0, answers = 0;
  for (int i = 0; i < 100000; ++i) {
    std::string frame;
    bool multipart = false;
    switch (rng() % 6) {
      case 0:
        break;  // empty
      case 1: {
        frame.resize(1 + rng() % 200);
        for (char& ch : frame) ch = static_cast<char>(rng());
        break;
      }
      case 2:
        frame = std::string(words[rng() % 13]) + " " + std::to_string(rng());
        break;
      case 3:
        frame = std::string(words[rng() % 3]) + std::string(1 + rng() % 5, '\0');
        break;
      case 4:
        multipart = (i % 10 == 0);
        frame = "status";
        break;
      default:
        frame = "\xff\xfe" + std::string(rng() % 64, '\x01');
        break;
    }
    if (i % 2000 == 0) frame.assign(1 << 20, static_cast<char>('a' + i % 26));  // 1 MiB
    if (multipart) req.send(zmq::buffer(std::string("junk")), zmq::send_flags::sndmore);
    req.send(zmq::buffer(frame), zmq::send_flags::none);
    zmq::message_t reply;
    ASSERT_TRUE(req.recv(reply)) << "no answer to frame " << i << "; coordinator log:\n"
                                 << c.Logs();
    ++answers;
    auto j = nlohmann::json::parse(reply.to_string(), nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("error")) ++errors;
  }
  EXPECT_EQ(answers, 100000);
  EXPECT_GT(errors, 50000);
  EXPECT_TRUE(coord->running());
  c.Command("throttle off");
  ASSERT_TRUE(c.WaitState("complete", 120000)) << c.Logs();
  EXPECT_EQ(CompareSqliteStores(c.legacy, c.target), "");
  ASSERT_TRUE(a->Wait(20000));
  ASSERT_TRUE(b->Wait(20000));
}

}  // namespace
}  // namespace ferry::testing
