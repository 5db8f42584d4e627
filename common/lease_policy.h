// LeasePolicy: every timing rule of a lease, built once from --lease-ttl and
// used by both sides. The coordinator sends it to each worker at
// registration (Registered), so a worker never derives its own margins.
//
//   ttl_ms        a grant or heartbeat renews the lease until now + ttl_ms
//   heartbeat_ms  a worker heartbeats this often (ttl / 5, within 20..1000 ms)
//   safety_ms     a worker writes no batch within this of its own view of the
//                 deadline (ttl / 5, at least 50 ms)
//   liveness_ms   a worker heard from within this is live (3 × ttl)
//   give_up_ms    a worker stops retrying an unanswered completion or
//                 release after this (3 × ttl): its lease is long gone
//
// Thread safety: a value; immutable after construction.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace ferry {

struct LeasePolicy {
  int64_t ttl_ms = 10000;
  int64_t heartbeat_ms = 1000;
  int64_t safety_ms = 2000;
  int64_t liveness_ms = 30000;
  int64_t give_up_ms = 30000;

  // The policy for a lease TTL (--lease-ttl). kInvalidArgument below 100 ms.
  static Result<LeasePolicy> ForTtl(int64_t ttl_ms);

  // A worker last heard from at `last_seen_ms` is live at `now_ms`.
  bool HeardRecently(int64_t last_seen_ms, int64_t now_ms) const {
    return now_ms - last_seen_ms <= liveness_ms;
  }
};

}  // namespace ferry
