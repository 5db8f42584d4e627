// libFuzzer target: the status socket's command line against an in-memory
// coordinator (tests/fuzz/coordinator_harness.h). An input is up to four
// command lines separated by '\n' (so sequences like "pause\nstatus" are
// reachable); each reply must be one JSON document (Prometheus text for
// `metrics`), and nothing may throw or crash. Before the first input two
// workers register over the worker socket — one with an id that is not
// valid UTF-8, as a hostile worker may send — and one holds a lease, so
// drain, revoke, ranges and workers have something to act on.
#include <capnp/message.h>

#include <cstdint>
#include <string>

#include "common/wire.h"
#include "tests/fuzz/coordinator_harness.h"

namespace {

std::string Register(const std::string& id) {
  capnp::MallocMessageBuilder b;
  auto r = ferry::NewEnvelope(b, 1).getBody().initRegister();
  r.setWorkerId(id);
  r.setHost("fuzz\xff host");
  r.setPid(1);
  r.setVersion("fuzz");
  return ferry::ToFrame(b).to_string();
}

std::string Lease(const std::string& id) {
  capnp::MallocMessageBuilder b;
  ferry::NewEnvelope(b, 2).getBody().initLeaseRequest().setWorkerId(id);
  return ferry::ToFrame(b).to_string();
}

void Populate(ferry::fuzz::CoordinatorHarness& h) {
  h.Frames(0, {Register("w1"), Lease("w1")});
  h.Frames(1, {Register(std::string("w\xff\xfe", 3)), Lease(std::string("w\xff\xfe", 3))});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& h = ferry::fuzz::CoordinatorHarness::Get();
  static bool populated = false;
  if (!populated) Populate(h), populated = true;
  const std::string input(reinterpret_cast<const char*>(data), size);
  size_t start = 0;
  for (int i = 0; i < 4 && start <= input.size(); ++i) {
    size_t end = input.find('\n', start);
    if (end == std::string::npos) end = input.size();
    h.Command(input.substr(start, end - start));
    start = end + 1;
  }
  h.Advance(50);
  if (h.MaybeReset(5000)) Populate(h);
  return 0;
}
