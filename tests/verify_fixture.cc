#include "tests/verify_fixture.h"

#include <gtest/gtest.h>

#include <variant>

#include "common/clock.h"
#include "common/key_codec.h"
#include "ferry.capnp.h"

namespace ferry::testing {

CoordinatorOptions VerifyingCoordinator(const std::string& legacy, const std::string& target,
                                        const std::string& state,
                                        const std::string& status_endpoint) {
  CoordinatorOptions o;
  o.source_uri = "sqlite:" + legacy;
  o.target_uri = "sqlite:" + target;
  o.state_path = state;
  o.listen = "";
  o.status_endpoint = status_endpoint;
  o.verify = true;
  return o;
}

std::vector<Status> RunVerifiers(CoordinatorServer& c, zmq::context_t* ctx) {
  WorkerThread a(ctx, c.inproc_endpoint(), "verifier-a", FEATURE_VERIFY | FEATURE_SPLIT);
  WorkerThread b(ctx, c.inproc_endpoint(), "verifier-b", FEATURE_VERIFY | FEATURE_SPLIT);
  const int64_t deadline = MonotonicMs() + 60000;
  while (MonotonicMs() < deadline && !(c.complete() && a.finished() && b.finished())) c.Step(5);
  b.Stop();  // in the order they would be destroyed
  a.Stop();
  return {a.result(), b.result()};
}

int64_t IntKeyBound(const std::string& encoded, int64_t unbounded) {
  if (encoded.empty()) return unbounded;
  auto v = DecodeKey(encoded);
  EXPECT_TRUE(v.ok() && v->size() == 1);
  return std::get<int64_t>((*v)[0]);
}

std::string KeyName(int64_t k) {
  const Value v{k};
  return KeyToString(EncodeKey(&v, 1));
}

}  // namespace ferry::testing
