#include "coordinator/worker_registry.h"

namespace ferry {

void WorkerRegistry::Load(std::vector<WorkerRow> rows) {
  workers_.clear();
  dirty_.clear();
  for (WorkerRow& r : rows) {
    std::string id = r.id;
    workers_[id].row = std::move(r);
  }
}

WorkerInfo& WorkerRegistry::Register(const std::string& id, const std::string& host, int64_t pid,
                                     const std::string& version) {
  const int64_t now = clock_->NowMs();
  WorkerInfo& w = workers_[id];
  const bool fresh = w.row.id.empty();
  w.row = WorkerRow{id, host, pid, version, fresh ? now : w.row.registered_ms, now, "active"};
  w.told_done = false;
  dirty_.push_back(w.row);
  return w;
}

WorkerInfo* WorkerRegistry::Touch(const std::string& id) {
  WorkerInfo* w = Find(id);
  if (w) w->row.last_seen_ms = clock_->NowMs();
  return w;
}

WorkerInfo* WorkerRegistry::Find(const std::string& id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

const WorkerInfo* WorkerRegistry::Find(const std::string& id) const {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

void WorkerRegistry::SetState(WorkerInfo* w, const char* state) {
  w->row.state = state;
  dirty_.push_back(w->row);
}

bool WorkerRegistry::IsLive(const WorkerInfo& w) const {
  return !w.gone() && !w.draining() && policy_->HeardRecently(w.row.last_seen_ms, clock_->NowMs());
}

const char* WorkerRegistry::StateOf(const WorkerInfo& w) const {
  if (w.gone() || !policy_->HeardRecently(w.row.last_seen_ms, clock_->NowMs())) return "gone";
  return w.draining() ? "draining" : "active";
}

size_t WorkerRegistry::CountLive() const {
  size_t n = 0;
  for (const auto& [id, w] : workers_) n += IsLive(w);
  return n;
}

bool WorkerRegistry::AllLiveToldDone() const {
  for (const auto& [id, w] : workers_) {
    if (IsLive(w) && !w.told_done) return false;
  }
  return true;
}

void WorkerRegistry::SetCurrentRanges(const std::vector<std::pair<uint64_t, std::string>>& leases) {
  for (auto& [id, w] : workers_) w.current_range = 0;
  for (const auto& [range, owner] : leases) {
    if (WorkerInfo* w = Find(owner)) w->current_range = range;
  }
}

void WorkerRegistry::SampleRates() {
  const int64_t now = clock_->NowMs();
  for (auto& [id, w] : workers_) {
    if (now - w.rate_mark_ms < 2000) continue;
    if (w.rate_mark_ms) {
      w.rows_per_second = (w.rows - w.rate_mark_rows) * 1000.0 / (now - w.rate_mark_ms);
    }
    w.rate_mark_ms = now;
    w.rate_mark_rows = w.rows;
  }
}

std::vector<WorkerRow> WorkerRegistry::TakeDirty() {
  std::vector<WorkerRow> out;
  out.swap(dirty_);
  return out;
}

}  // namespace ferry
