// Build and protocol versions.
#pragma once

#include <cstdint>

namespace ferry {

inline constexpr const char* kFerryVersion = "0.1.0";
// Version of schemas/ferry.capnp's contract. Bump only on incompatible change.
// 2: Report (LeaseRef + Progress) replaces Heartbeat/Complete/Release;
// Registered carries the whole lease policy.
inline constexpr uint32_t kProtocolVersion = 2;
// Version of the coordinator's state schema (SqliteStateStore, PgStateStore).
// 2: the job's migration spec (spec_text, spec_digest), ranges' rejected rows.
inline constexpr int kStateSchemaVersion = 2;

}  // namespace ferry
