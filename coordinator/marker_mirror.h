// MarkerMirror: copies the committed boundary and, once the job is complete,
// the version to the new store's metadata table (Store::WriteMarker), after
// the state commit that decided them. Idempotent: a restart in between (or a
// failed write, retried once a second) simply writes them again.
//
// Thread safety: owned by the coordinator's event-loop thread; uses the
// coordinator's own connection to the new store.
#pragma once

#include <cstdint>
#include <string>

#include "common/clock.h"
#include "coordinator/range_record.h"
#include "stores/store.h"

namespace ferry {

class MarkerMirror {
 public:
  MarkerMirror(Store* target, const Clock* clock) : target_(target), clock_(clock) {}

  // Writes what `job` holds if it changed (at most once a second for
  // boundary moves). True when this call wrote the final version of a
  // complete job that was not yet marked mirrored.
  bool Update(const JobMeta& job);

 private:
  Store* target_;
  const Clock* clock_;
  std::string mirrored_boundary_;
  bool needed_ = true;  // nothing written yet in this process
  int64_t next_ms_ = 0;
};

}  // namespace ferry
