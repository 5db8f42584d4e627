// libFuzzer target: worker frames decoded and dispatched by an in-memory
// coordinator (tests/fuzz/coordinator_harness.h), as they arrive on the
// worker socket from a hostile peer.
//
// Input: one byte, then up to eight frames separated by kSeparator. The
// byte picks which of three worker sockets sends (low bits) and how far the
// fake clock moves first (high bits: 0..1.6 s, so leases of 1 s expire
// mid-sequence). A sequence lets one input register, lease, heartbeat and
// complete with the epoch it was granted. Every reply must decode as an
// Envelope; nothing may crash, hang or leak.
//
// The seed corpus tests/fuzz/worker_frame/ is written by this same binary:
//   FERRY_FUZZ_WRITE_SEEDS=tests/fuzz/worker_frame build/fuzz/bin/fuzz_worker_frame
#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/schema.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "common/version.h"
#include "common/wire.h"
#include "tests/fuzz/coordinator_harness.h"

namespace {

const std::string kSeparator = "\xfe\xed\xfa\xce";

std::string Frame(capnp::MallocMessageBuilder& b) { return ferry::ToFrame(b).to_string(); }

std::string Register(const std::string& id) {
  capnp::MallocMessageBuilder b;
  auto r = ferry::NewEnvelope(b, 1).getBody().initRegister();
  r.setWorkerId(id), r.setHost("seed"), r.setPid(7), r.setVersion("seed");
  return Frame(b);
}

std::string Lease(const std::string& id, uint32_t version = ferry::kProtocolVersion) {
  capnp::MallocMessageBuilder b;
  auto env = ferry::NewEnvelope(b, 2);
  env.setProtocolVersion(version);
  env.getBody().initLeaseRequest().setWorkerId(id);
  return Frame(b);
}

std::string Report(::Report::Kind kind, uint64_t rid, const std::string& id, uint64_t range,
                   uint64_t epoch, const std::string& cursor, uint64_t rows, bool next,
                   bool leaving) {
  capnp::MallocMessageBuilder b;
  auto r = ferry::NewEnvelope(b, rid).getBody().initReport();
  r.setKind(kind);
  ferry::SetLeaseRef(r.initLease(), range, epoch, id);
  ferry::SetProgress(r.initProgress(), cursor, rows, rows * 10, 0);
  r.setNext(next);
  r.setLeaving(leaving);
  return Frame(b);
}

std::string Heartbeat(const std::string& id, uint64_t range, uint64_t epoch) {
  return Report(::Report::Kind::HEARTBEAT, 3, id, range, epoch,
                std::string("\x10\x80\x00\x00\x00\x00\x00\x00\x04", 9), 4, false, false);
}

std::string Complete(const std::string& id, uint64_t range, uint64_t epoch, bool next) {
  return Report(::Report::Kind::COMPLETE, 4, id, range, epoch, "", 8, next, false);
}

std::string Release(const std::string& id, uint64_t range, uint64_t epoch, bool leaving) {
  return Report(::Report::Kind::RELEASE, 5, id, range, epoch, "", 0, false, leaving);
}

std::string ReportError(const std::string& id, uint64_t range, uint64_t epoch, bool permanent) {
  capnp::MallocMessageBuilder b;
  auto r = ferry::NewEnvelope(b, 6).getBody().initReportError();
  ferry::SetLeaseRef(r.initLease(), range, epoch, id);
  r.setPermanent(permanent);
  r.setMessage("disk I/O error \xff");
  return Frame(b);
}

// A reply-only body (grant) sent by a worker, and an unknown union tag.
std::string GrantFromWorker() {
  capnp::MallocMessageBuilder b;
  auto g = ferry::NewEnvelope(b, 7).getBody().initGrant();
  g.setRangeId(1), g.setEpoch(1), g.setTable("users");
  return Frame(b);
}

std::string UnknownTag() {
  capnp::MallocMessageBuilder b;
  ferry::NewEnvelope(b, 8).getBody().initLeaseRequest().setWorkerId("seed");
  const uint32_t off =
      capnp::Schema::from<Envelope::Body>().getProto().getStruct().getDiscriminantOffset();
  auto data = b.getRoot<capnp::AnyStruct>().getDataSection();
  data[off * 2] = static_cast<capnp::byte>(0xEE);
  return Frame(b);
}

std::string Input(uint8_t head, const std::vector<std::string>& frames) {
  std::string out(1, static_cast<char>(head));
  for (size_t i = 0; i < frames.size(); ++i) out += (i ? kSeparator : "") + frames[i];
  return out;
}

void WriteSeeds(const std::string& dir) {
  const std::string w = "w1";
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"register", Input(0, {Register(w)})},
      {"register-lease", Input(0, {Register(w), Lease(w)})},
      {"lease-heartbeat-complete",
       Input(0, {Register(w), Lease(w), Heartbeat(w, 1, 1), Complete(w, 1, 1, true)})},
      {"lease-release-leaving", Input(1, {Register("w2"), Lease("w2"), Release("w2", 1, 1, true)})},
      {"lease-expire-stale", Input(3 * 40, {Register(w), Lease(w), Heartbeat(w, 1, 1)})},
      {"report-permanent", Input(2, {Register("w3"), Lease("w3"), ReportError("w3", 1, 1, true)})},
      {"unregistered-heartbeat", Input(0, {Heartbeat("nobody", 2, 9)})},
      {"wrong-version", Input(0, {Lease(w, ferry::kProtocolVersion + 1)})},
      {"grant-from-worker", Input(0, {GrantFromWorker()})},
      {"unknown-tag", Input(0, {UnknownTag()})},
      {"truncated", Input(0, {Register(w).substr(0, 20)})},
      {"empty-frame", Input(0, {""})},
      {"garbage", Input(0, {std::string("\x00\x00\x00\x00\xff\xff\xff\x7f garbage", 16)})},
  };
  for (const auto& [name, bytes] : seeds) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
  }
  std::printf("wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("FERRY_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto& h = ferry::fuzz::CoordinatorHarness::Get();
  h.Advance((data[0] >> 2) * 25);
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::string> frames;
  size_t start = 0;
  while (frames.size() < 8) {
    size_t end = body.find(kSeparator, start);
    frames.push_back(
        body.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + kSeparator.size();
  }
  h.Frames(data[0] & 3, frames);
  h.MaybeReset(2000);
  return 0;
}
