#include "coordinator/split_policy.h"

#include <algorithm>

namespace ferry {

std::vector<SplitAsk> ChooseSplits(const std::vector<SplitCandidate>& candidates, size_t idle,
                                   const SplitPolicyOptions& options) {
  std::vector<SplitAsk> out;
  if (idle == 0 || candidates.empty()) return out;
  struct Projected {
    double finish_ms;
    const SplitCandidate* c;
  };
  std::vector<Projected> measured;
  double total_ms = 0;
  for (const SplitCandidate& c : candidates) {
    if (c.leased_ms < options.min_leased_ms || c.rows_per_second <= 0) continue;
    const double ms = c.rows_left * 1000.0 / c.rows_per_second;
    measured.push_back(Projected{ms, &c});
    total_ms += ms;
  }
  if (measured.empty()) return out;
  // The fleet's finish if the remaining work were spread evenly over the
  // busy owners and the idle workers.
  const double fleet_ms = total_ms / static_cast<double>(measured.size() + idle);
  std::sort(measured.begin(), measured.end(),
            [](const Projected& a, const Projected& b) { return a.finish_ms > b.finish_ms; });
  for (const Projected& p : measured) {
    if (out.size() >= idle) break;
    if (p.c->rows_left < options.min_rows) continue;
    if (p.finish_ms < static_cast<double>(options.min_finish_ms)) continue;
    if (p.finish_ms < options.behind * fleet_ms) continue;
    out.push_back(SplitAsk{p.c->range, p.c->rows_left / 2});
  }
  return out;
}

std::vector<SplitAsk> ForceSplits(const std::vector<SplitCandidate>& candidates,
                                  const SplitPolicyOptions& options) {
  std::vector<SplitAsk> out;
  for (const SplitCandidate& c : candidates) {
    if (c.rows_left >= options.min_rows) out.push_back(SplitAsk{c.range, c.rows_left / 2});
  }
  return out;
}

}  // namespace ferry
