// Hostile peers against a real ferry-coordinator process while two real
// ferry-worker processes migrate: a raw ZeroMQ DEALER sends empty, random,
// truncated, oversized, multi-frame, wrong-version and unknown-type messages
// and fenced-off heartbeats/completions; a raw REQ socket sends garbage to the
// status socket. The coordinator must answer each with an error (or drop and
// count it), keep serving everyone, and the migration must complete with the
// stores equal.
#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/version.h"
#include "common/wire.h"
#include "tests/process_util.h"
#include "tests/test_util.h"

namespace ferry::testing {
namespace {

constexpr uint64_t kSyncBase = 0x5EC0000000000000ull;

bool HasWord(const std::string& text, const std::string& word) {
  return std::regex_search(text, std::regex("(^|[^0-9A-Za-z_])" + word + "([^0-9A-Za-z_]|$)"));
}

std::string Bytes(capnp::MessageBuilder& b) {
  auto flat = capnp::messageToFlatArray(b);
  auto bytes = flat.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

std::string RegisterMsg(const std::string& id, uint64_t rid) {
  capnp::MallocMessageBuilder b;
  auto r = NewEnvelope(b, rid).getBody().initRegister();
  r.setWorkerId(id);
  r.setHost("fuzz-host");
  r.setPid(4242);
  r.setVersion("fuzz");
  return Bytes(b);
}

std::string LeaseRequestMsg(const std::string& id, uint64_t rid,
                            uint32_t version = kProtocolVersion) {
  capnp::MallocMessageBuilder b;
  auto env = NewEnvelope(b, rid);
  env.setProtocolVersion(version);
  env.getBody().initLeaseRequest().setWorkerId(id);
  return Bytes(b);
}

std::string ReportMsg(::Report::Kind kind, const std::string& id, uint64_t rid, uint64_t range,
                      uint64_t epoch, const std::string& cursor, uint64_t rows) {
  capnp::MallocMessageBuilder b;
  auto r = NewEnvelope(b, rid).getBody().initReport();
  r.setKind(kind);
  SetLeaseRef(r.initLease(), range, epoch, id);
  SetProgress(r.initProgress(), cursor, rows, rows, 0);
  return Bytes(b);
}

std::string HeartbeatMsg(const std::string& id, uint64_t rid, uint64_t range, uint64_t epoch) {
  return ReportMsg(::Report::Kind::HEARTBEAT, id, rid, range, epoch, std::string("\x15\x01", 2), 1);
}

std::string CompleteMsg(const std::string& id, uint64_t rid, uint64_t range, uint64_t epoch) {
  return ReportMsg(::Report::Kind::COMPLETE, id, rid, range, epoch, "", 999999);
}

// A protocol-1 Heartbeat (the member protocol 2 replaced by Report).
std::string OldHeartbeatMsg(const std::string& id, uint64_t rid) {
  capnp::MallocMessageBuilder b;
  auto env = NewEnvelope(b, rid);
  env.setProtocolVersion(1);
  auto h = env.getBody().initHeartbeat();
  h.setWorkerId(id);
  h.setRangeId(1);
  h.setEpoch(1);
  return Bytes(b);
}

// A valid LeaseRequest whose union tag is patched to a value no schema knows.
std::string UnknownTagMsg(uint64_t rid) {
  capnp::MallocMessageBuilder b;
  NewEnvelope(b, rid).getBody().initLeaseRequest().setWorkerId("fuzz");
  const uint32_t off =
      capnp::Schema::from<Envelope::Body>().getProto().getStruct().getDiscriminantOffset();
  auto data = b.getRoot<capnp::AnyStruct>().getDataSection();
  EXPECT_GT(data.size(), off * 2 + 1);
  data[off * 2] = 0xEE;  // tag 238, little-endian
  data[off * 2 + 1] = 0x00;
  return Bytes(b);
}

struct Reply {
  bool ok = false;  // decoded
  uint64_t request_id = 0;
  bool is_error = false;
  Error::Code code = Error::Code::INTERNAL;
  std::string message;
  uint64_t range = 0, epoch = 0;
  std::string which;
};

Reply DecodeReply(const zmq::message_t& m) {
  Reply r;
  auto d = DecodeEnvelope(m.data(), m.size());
  if (!d.ok()) return r;
  r.ok = true;
  auto env = (*d)->root();
  r.request_id = env.getRequestId();
  auto body = env.getBody();
  switch (body.which()) {
    case Envelope::Body::ERROR: {
      r.is_error = true;
      auto e = body.getError();
      r.code = e.getCode();
      r.message = AsView(e.getMessage());
      r.range = e.getRangeId();
      r.epoch = e.getEpoch();
      r.which = "error";
      break;
    }
    case Envelope::Body::REGISTERED:
      r.which = "registered";
      break;
    case Envelope::Body::GRANT:
      r.which = "grant";
      break;
    case Envelope::Body::NO_WORK:
      r.which = "noWork";
      break;
    case Envelope::Body::ACK:
      r.which = "ack";
      break;
    default:
      r.which = "other";
      break;
  }
  return r;
}

// A raw DEALER: sends anything, then a sync request (a LeaseRequest from an
// unregistered id, always answered `unknownWorker`) and collects every reply
// up to the sync answer. Proves the coordinator is still serving this peer.
class RawPeer {
 public:
  RawPeer(zmq::context_t& ctx, const std::string& endpoint) : sock_(ctx, zmq::socket_type::dealer) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.set(zmq::sockopt::sndtimeo, 5000);
    sock_.connect(endpoint);
  }

  void Send(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      ASSERT_TRUE(sock_.send(zmq::buffer(frames[i]), flags)) << "send timed out";
    }
  }

  // Sends `frames`, then the sync. Returns the replies before the sync's;
  // *synced is false if the sync answer never came (within 10 s).
  std::vector<Reply> Exchange(const std::vector<std::string>& frames, bool* synced) {
    Send(frames);
    const uint64_t sync = kSyncBase + (++syncs_);
    Send({LeaseRequestMsg("fuzz-unregistered", sync)});
    std::vector<Reply> out;
    *synced = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      std::vector<zmq::pollitem_t> items = {{static_cast<void*>(sock_), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, std::chrono::milliseconds(100));
      zmq::message_t m;
      while (sock_.recv(m, zmq::recv_flags::dontwait)) {
        Reply r = DecodeReply(m);
        if (r.ok && r.request_id == sync && r.is_error && r.code == Error::Code::UNKNOWN_WORKER) {
          *synced = true;
          return out;
        }
        out.push_back(r);
      }
    }
    return out;
  }

  // Exchange() expecting exactly one reply to `frames`.
  Reply One(const std::vector<std::string>& frames) {
    bool synced = false;
    auto replies = Exchange(frames, &synced);
    EXPECT_TRUE(synced) << "the coordinator stopped answering";
    EXPECT_EQ(replies.size(), 1u);
    return replies.empty() ? Reply{} : replies[0];
  }

 private:
  zmq::socket_t sock_;
  uint64_t syncs_ = 0;
};

int64_t Metric(const std::string& status_endpoint, const std::string& name) {
  std::string text;
  if (!StatusCommand(status_endpoint, "metrics", &text, 5000)) return -1;
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("(^|\\n)" + name + " ([0-9.e+]+)"))) return -1;
  return static_cast<int64_t>(std::stod(m[2]));
}

nlohmann::json StatusJson(const std::string& endpoint, const std::string& cmd = "status") {
  std::string reply;
  if (!StatusCommand(endpoint, cmd, &reply, 5000)) return nullptr;
  return nlohmann::json::parse(reply, nullptr, false);
}

class ProtocolFuzzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    legacy_ = dir_.File("legacy.db");
    target_ = dir_.File("new.db");
    state_ = dir_.File("state.db");
    MakeDemoStore(legacy_, kRows, 3);
    coord_ = std::make_unique<Process>(
        std::vector<std::string>{Bin("ferry-coordinator"), "--source", "sqlite:" + legacy_,
                                 "--target", "sqlite:" + target_, "--state", state_, "--listen",
                                 "tcp://127.0.0.1:0", "--status-endpoint", "tcp://127.0.0.1:0",
                                 "--endpoints-file", dir_.File("ep.json"), "--range-rows", "300",
                                 "--batch-rows", "100", "--lease-ttl", "5"},
        dir_.File("coord.log"));
    ASSERT_TRUE(ReadEndpointsFile(dir_.File("ep.json"), &ep_, 20000)) << Log();
  }
  std::string Log() { return ReadFile(dir_.File("coord.log")); }

  static constexpr int64_t kRows = 15000;
  TempDir dir_;
  std::string legacy_, target_, state_;
  std::unique_ptr<Process> coord_;
  CoordinatorEndpoints ep_;
  zmq::context_t ctx_;
};

TEST_F(ProtocolFuzzTest, HostileWorkerMessagesWhileRealWorkersMigrate) {
  std::mt19937_64 rng(20240611);
  RawPeer peer(ctx_, ep_.listen);
  const int64_t malformed0 = Metric(ep_.status, "ferry_malformed_messages_total");
  const int64_t mismatch0 = Metric(ep_.status, "ferry_protocol_mismatch_total");
  ASSERT_GE(malformed0, 0) << "no ferry_malformed_messages_total in metrics";
  int64_t expect_malformed = 0;

  auto expect_error = [&](const std::vector<std::string>& frames, const std::string& what) {
    bool synced = false;
    auto replies = peer.Exchange(frames, &synced);
    EXPECT_TRUE(synced) << what << ": the coordinator stopped answering\n" << Log();
    EXPECT_LE(replies.size(), 1u) << what;
    for (const Reply& r : replies) {
      EXPECT_TRUE(r.ok) << what << ": undecodable reply";
      EXPECT_TRUE(r.is_error) << what << ": answered with " << r.which;
      if (r.is_error) {
        EXPECT_EQ(r.code, Error::Code::BAD_MESSAGE) << what << ": " << r.message;
      }
    }
  };

  // 1. Empty frame.
  expect_error({std::string()}, "empty frame");
  ++expect_malformed;

  // 2. Random bytes of many lengths (odd lengths cannot be a message at all).
  for (size_t len : {1,  3,  7,   8,   9,   15,   16,   17,   24,    31,     32,
                     40, 64, 100, 255, 256, 1000, 4096, 4097, 65536, 1 << 20}) {
    for (int rep = 0; rep < 3; ++rep) {
      std::string junk(len, '\0');
      for (char& c : junk) c = static_cast<char>(rng());
      bool synced = false;
      auto replies = peer.Exchange({junk}, &synced);
      ASSERT_TRUE(synced) << "random " << len << " bytes: no answer after\n" << Log();
      EXPECT_LE(replies.size(), 1u);
      for (const Reply& r : replies) {
        EXPECT_TRUE(r.ok && r.is_error) << "random " << len << " bytes answered with " << r.which;
      }
      if (len % 8 != 0) ++expect_malformed;
    }
  }

  // 3. Truncated valid messages.
  const std::string reg = RegisterMsg("fuzz-truncated", 77);
  ASSERT_GT(reg.size(), 32u);
  for (size_t cut : {reg.size() - 8, reg.size() / 2 / 8 * 8, reg.size() - 3, size_t{8}}) {
    expect_error({reg.substr(0, cut)}, "truncated to " + std::to_string(cut));
    ++expect_malformed;
  }

  // 4. Another protocol version: an error naming both versions.
  {
    Reply r = peer.One({LeaseRequestMsg("fuzz-v999", 4711, 999)});
    EXPECT_TRUE(r.is_error);
    EXPECT_EQ(r.code, Error::Code::VERSION_MISMATCH) << r.message;
    EXPECT_EQ(r.request_id, 4711u);
    EXPECT_TRUE(HasWord(r.message, "999")) << r.message;
    EXPECT_TRUE(HasWord(r.message, std::to_string(kProtocolVersion))) << r.message;
  }
  // A peer of the previous protocol (protocol 1's Heartbeat) gets the same
  // clear version mismatch, not a parse error.
  {
    Reply r = peer.One({OldHeartbeatMsg("fuzz-v1", 4713)});
    EXPECT_TRUE(r.is_error);
    EXPECT_EQ(r.code, Error::Code::VERSION_MISMATCH) << r.message;
    EXPECT_EQ(r.request_id, 4713u);
    EXPECT_TRUE(HasWord(r.message, "1")) << r.message;
    EXPECT_TRUE(HasWord(r.message, std::to_string(kProtocolVersion))) << r.message;
  }

  // 5. Unknown union member.
  expect_error({UnknownTagMsg(4712)}, "unknown union tag");
  ++expect_malformed;

  // 6. Oversized frame (over the 4 MiB message limit, under the socket's cap).
  {
    std::string big(5 << 20, '\0');
    std::string head = RegisterMsg("fuzz-big", 1);
    big.replace(0, head.size(), head);
    expect_error({big}, "5 MiB frame");
    ++expect_malformed;
  }

  // 7. Multi-frame messages.
  expect_error({LeaseRequestMsg("fuzz-multi", 5), "junk"}, "two frames");
  expect_error({std::string(), std::string()}, "two empty frames");
  expect_error({"a", "b", "c", "d", "e"}, "five frames");
  expect_malformed += 3;

  // 8. Mutations of valid messages: anything goes except silence or a crash.
  // (Different ids per seed: a mutated Register that keeps its id must not
  // make the LeaseRequest seed's id a registered worker that grabs leases.)
  const std::vector<std::string> seeds = {RegisterMsg("fuzz-r", 9), LeaseRequestMsg("fuzz-l", 10),
                                          HeartbeatMsg("fuzz-h", 11, 1, 1),
                                          CompleteMsg("fuzz-c", 12, 2, 1)};
  for (int i = 0; i < 200; ++i) {
    std::string m = seeds[i % seeds.size()];
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) m[rng() % m.size()] = static_cast<char>(rng());
    bool synced = false;
    auto replies = peer.Exchange({m}, &synced);
    ASSERT_TRUE(synced) << "mutation " << i << ": no answer after\n" << Log();
    EXPECT_LE(replies.size(), 1u);
  }

  // Counted: every message above that cannot be a valid message.
  EXPECT_GE(Metric(ep_.status, "ferry_malformed_messages_total") - malformed0, expect_malformed);
  EXPECT_GE(Metric(ep_.status, "ferry_protocol_mismatch_total") - mismatch0, 1);

  // 9. A registered impostor heartbeating ranges it does not own: lease lost.
  {
    Reply r = peer.One({RegisterMsg("fuzz-impostor", 20)});
    ASSERT_EQ(r.which, "registered") << r.message;
    r = peer.One({HeartbeatMsg("fuzz-impostor", 21, 1, 12345)});
    EXPECT_TRUE(r.is_error);
    EXPECT_EQ(r.code, Error::Code::LEASE_LOST) << r.message;
    EXPECT_EQ(r.range, 1u);
    EXPECT_EQ(r.epoch, 12345u);
    r = peer.One({HeartbeatMsg("fuzz-impostor", 22, 987654321, 1)});
    EXPECT_EQ(r.code, Error::Code::LEASE_LOST) << r.which << " " << r.message;
  }

  // Now the real workers, slowed by a throttle so the fuzzing overlaps them.
  ASSERT_TRUE(StatusJson(ep_.status, "throttle 4000").is_object());
  Process w1({Bin("ferry-worker"), "--coordinator", ep_.listen, "--id", "w1"}, dir_.File("w1.log"));
  Process w2({Bin("ferry-worker"), "--coordinator", ep_.listen, "--id", "w2"}, dir_.File("w2.log"));

  // 10. Fenced-off messages for a range a real worker holds right now.
  nlohmann::json leased;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto j = StatusJson(ep_.status, "ranges leased");
        if (!j.is_object() || !j["ranges"].is_array() || j["ranges"].empty()) return false;
        leased = j["ranges"][0];
        return true;
      },
      30000))
      << "no range was ever leased\n"
      << Log();
  const uint64_t range = leased["id"].get<uint64_t>();
  const uint64_t epoch = leased["epoch"].get<uint64_t>();
  const std::string owner = leased["owner"].get<std::string>();
  {
    // Right epoch, wrong worker.
    Reply r = peer.One({HeartbeatMsg("fuzz-impostor", 30, range, epoch)});
    EXPECT_EQ(r.code, Error::Code::LEASE_LOST) << r.which << " " << r.message;
    r = peer.One({CompleteMsg("fuzz-impostor", 31, range, epoch)});
    EXPECT_EQ(r.code, Error::Code::LEASE_LOST) << r.which << " " << r.message;
    // The owner's name with a stale or future epoch.
    r = peer.One({HeartbeatMsg(owner, 32, range, epoch + 1000)});
    EXPECT_EQ(r.code, Error::Code::LEASE_LOST) << r.which << " " << r.message;
    r = peer.One({CompleteMsg(owner, 33, range, epoch + 1000)});
    EXPECT_EQ(r.code, Error::Code::LEASE_LOST) << r.which << " " << r.message;
    if (epoch > 1) {
      r = peer.One({CompleteMsg(owner, 34, range, epoch - 1)});
      EXPECT_EQ(r.code, Error::Code::LEASE_LOST) << r.which << " " << r.message;
    }
  }

  // 11. Keep throwing junk (random and mutated) while the workers copy, and
  // check the status socket stays responsive.
  ASSERT_TRUE(StatusJson(ep_.status, "throttle off").is_object());
  const auto t_end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::string state;
  int rounds = 0;
  while (std::chrono::steady_clock::now() < t_end) {
    std::vector<std::string> burst;
    for (int i = 0; i < 20; ++i) {
      if (i % 2) {
        std::string junk(1 + 2 * (rng() % 150), '\0');  // odd length: never a message
        for (char& c : junk) c = static_cast<char>(rng());
        burst.push_back(junk);
      } else {
        std::string m = seeds[rng() % seeds.size()];
        m[rng() % m.size()] = static_cast<char>(rng());
        burst.push_back(m);
      }
    }
    for (const std::string& m : burst) peer.Send({m});
    bool synced = false;
    peer.Exchange({}, &synced);
    ASSERT_TRUE(synced) << "the coordinator stopped answering during the migration\n" << Log();
    ++rounds;
    auto st = StatusJson(ep_.status);
    ASSERT_TRUE(st.is_object()) << "status socket stopped answering\n" << Log();
    state = st.value("state", "");
    if (state == "complete" || state == "failed") break;
  }
  EXPECT_EQ(state, "complete") << Log();
  EXPECT_GT(rounds, 0);
  const int64_t malformed = Metric(ep_.status, "ferry_malformed_messages_total") - malformed0;
  EXPECT_GE(malformed, expect_malformed + rounds * 10);  // + the odd-length junk
  std::cout << "fuzz: " << rounds << " junk bursts during the copy; malformed counted " << malformed
            << " (certainly malformed sent before the copy: " << expect_malformed
            << "); fenced range " << range << " epoch " << epoch << " owner " << owner << "\n";

  ASSERT_TRUE(w1.Wait(30000)) << ReadFile(dir_.File("w1.log"));
  ASSERT_TRUE(w2.Wait(30000)) << ReadFile(dir_.File("w2.log"));
  EXPECT_EQ(w1.exit_code(), 0) << ReadFile(dir_.File("w1.log"));
  EXPECT_EQ(w2.exit_code(), 0) << ReadFile(dir_.File("w2.log"));
  EXPECT_TRUE(coord_->running()) << "the coordinator died\n" << Log();

  EXPECT_EQ(CompareSqliteStores(legacy_, target_), "");
  EXPECT_EQ(StoreVersion(target_), 2);
  // The forged completion (rows=999999) changed nothing.
  EXPECT_EQ(QueryInt(state_, "SELECT sum(rows) FROM ranges"), kRows);
  EXPECT_EQ(QueryInt(state_, "SELECT count(*) FROM ranges WHERE owner LIKE 'fuzz%'"), 0);

  coord_->Signal(SIGTERM);
  ASSERT_TRUE(coord_->Wait(20000));
  EXPECT_EQ(coord_->exit_code(), 0) << Log();
}

TEST_F(ProtocolFuzzTest, StatusSocketGarbage) {
  std::mt19937_64 rng(7);
  auto expect_json_error = [&](const std::vector<std::string>& frames, const std::string& what) {
    zmq::socket_t req(ctx_, zmq::socket_type::req);
    req.set(zmq::sockopt::linger, 0);
    req.set(zmq::sockopt::rcvtimeo, 5000);
    req.set(zmq::sockopt::sndtimeo, 5000);
    req.connect(ep_.status);
    for (size_t i = 0; i < frames.size(); ++i) {
      auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      ASSERT_TRUE(req.send(zmq::buffer(frames[i]), flags)) << what;
    }
    zmq::message_t m;
    ASSERT_TRUE(req.recv(m)) << what << ": no answer\n" << Log();
    auto j = nlohmann::json::parse(m.to_string(), nullptr, false);
    ASSERT_TRUE(j.is_object()) << what << ": not JSON: " << m.to_string().substr(0, 200);
    EXPECT_TRUE(j.contains("error")) << what << ": " << j.dump();
    // ...and it still answers `status`.
    auto st = StatusJson(ep_.status);
    ASSERT_TRUE(st.is_object()) << "status after " << what << "\n" << Log();
    EXPECT_TRUE(st.contains("state"));
  };

  expect_json_error({std::string()}, "empty command");
  expect_json_error({std::string(1 << 20, 'x')}, "1 MiB command");
  expect_json_error({"status " + std::string(1 << 20, ' ') + "x"}, "1 MiB status with junk");
  expect_json_error({"frobnicate"}, "unknown command");
  expect_json_error({"status extra args here"}, "status with arguments");
  expect_json_error({std::string("status\0junk", 11)}, "NUL inside the command");
  expect_json_error({"throttle -5"}, "negative throttle");
  expect_json_error({"throttle 99999999999999999999999"}, "huge throttle");
  expect_json_error({"revoke notanumber"}, "revoke junk");
  expect_json_error({"revoke 99999999"}, "revoke unknown range");
  expect_json_error({"drain nobody"}, "drain unknown worker");
  expect_json_error({"ranges bogus"}, "ranges filter junk");
  expect_json_error({"status", "second frame"}, "two frames");
  expect_json_error({std::string("\xff\xfe\xc3\x28\xa0\xa1", 6)}, "invalid UTF-8");
  for (int i = 0; i < 30; ++i) {
    std::string junk(1 + rng() % 2000, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    if (junk.rfind("status", 0) == 0) continue;
    expect_json_error({junk}, "random bytes #" + std::to_string(i));
  }

  // Over the socket's 4 MiB cap: ZeroMQ drops the peer; no answer is fine,
  // but the socket must keep serving others.
  {
    zmq::socket_t req(ctx_, zmq::socket_type::req);
    req.set(zmq::sockopt::linger, 0);
    req.set(zmq::sockopt::rcvtimeo, 1000);
    req.connect(ep_.status);
    req.send(zmq::buffer(std::string(5 << 20, 'y')), zmq::send_flags::none);
    zmq::message_t m;
    (void)req.recv(m);
  }
  auto st = StatusJson(ep_.status);
  ASSERT_TRUE(st.is_object()) << Log();
  EXPECT_TRUE(st.contains("ranges_total"));
  std::string help;
  ASSERT_TRUE(StatusCommand(ep_.status, "help", &help));
  EXPECT_TRUE(nlohmann::json::parse(help, nullptr, false).is_object()) << help;
  EXPECT_TRUE(coord_->running()) << Log();
}

}  // namespace
}  // namespace ferry::testing
