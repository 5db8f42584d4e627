// Coordinator metrics, rendered in the Prometheus text exposition format.
//
// Thread safety: owned by the coordinator's event-loop thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ferry {

// A fixed-bucket histogram (cumulative on render, as Prometheus wants).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void Observe(double v);
  // Appends "# TYPE" and the bucket/sum/count lines for `name`.
  void Render(const std::string& name, const std::string& help, std::string* out) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

// What the lease service counts (coordinator/lease_service.h).
struct LeaseMetrics {
  uint64_t lease_requests = 0;  // LeaseRequest messages (a completion asking for more is not one)
  uint64_t grants = 0;
  uint64_t expiries = 0;
  uint64_t completions = 0;
  uint64_t releases = 0;
  uint64_t revokes = 0;
  uint64_t lease_lost = 0;
  uint64_t range_errors = 0;
  uint64_t splits = 0;              // splits committed
  uint64_t split_asks = 0;          // owners asked to split
  uint64_t verify_completions = 0;  // ranges verified
  // Rows per heartbeat (the batch rows a worker committed since the last one).
  Histogram progress_rows{{100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000}};
};

// What the event loop counts (coordinator/coordinator_server.h).
struct ServerMetrics {
  uint64_t malformed = 0;
  uint64_t version_mismatch = 0;
  uint64_t commits = 0;
  uint64_t commit_failures = 0;
  uint64_t status_requests = 0;
  uint64_t auth_rejected = 0;  // CURVE handshakes refused (key not in the allow file)
  // Seconds per state commit (group commit of everything one loop pass did).
  Histogram commit_seconds{{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};
};

// Helpers for rendering.
void RenderCounter(const std::string& name, const std::string& help, uint64_t v, std::string* out);
void RenderGauge(const std::string& name, const std::string& help, double v, std::string* out);

}  // namespace ferry
