#include "coordinator/marker_mirror.h"

#include "common/logging.h"

namespace ferry {

bool MarkerMirror::Update(const JobMeta& job) {
  const bool finished = job.phase == JobPhase::kComplete;
  if (!needed_ && !(finished && !job.mirrored) && job.boundary == mirrored_boundary_) return false;
  const int64_t now = clock_->NowMs();
  if (!finished && !needed_ && now < next_ms_) return false;
  next_ms_ = now + 1000;
  Marker m;
  if (finished) m.version = job.to_version;
  m.boundary = finished ? std::string() : job.boundary;
  Status s = target_->WriteMarker(m);
  if (!s.ok()) {
    LogEvent(spdlog::level::warn, "mirror_failed",
             {{"error", s.message()}, {"action", "retrying in 1 s"}});
    return false;
  }
  mirrored_boundary_ = m.boundary;
  needed_ = false;
  if (finished && !job.mirrored) {
    LogEvent(spdlog::level::info, "version_marked",
             {{"version", job.to_version}, {"target", target_->Describe()}});
    return true;
  }
  return false;
}

}  // namespace ferry
