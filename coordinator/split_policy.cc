#include "coordinator/split_policy.h"

#include <algorithm>

namespace ferry {

std::vector<SplitAsk> ChooseSplits(const std::vector<SplitCandidate>& candidates, size_t idle,
                                   const SplitPolicyOptions& options) {
  std::vector<SplitAsk> out;
  // Each outstanding ask's tail will take one of the idle workers.
  for (const SplitCandidate& c : candidates) {
    if (c.asked && idle > 0) --idle;
  }
  if (idle == 0 || candidates.empty()) return out;
  auto measured = [&](const SplitCandidate& c) {
    return c.leased_ms >= options.min_leased_ms && c.rows_per_second > 0;
  };
  double rate_sum = 0;
  size_t rated = 0;
  for (const SplitCandidate& c : candidates) {
    if (!measured(c)) continue;
    rate_sum += c.rows_per_second;
    ++rated;
  }
  // No rate at all: rows stand for time (every owner assumed as fast).
  const bool by_rows = rated == 0;
  const double mean_rate = by_rows ? 0 : rate_sum / static_cast<double>(rated);
  struct Projected {
    double finish;  // ms, or rows when by_rows
    const SplitCandidate* c;
  };
  std::vector<Projected> all;
  double total = 0;
  for (const SplitCandidate& c : candidates) {
    const double rows = static_cast<double>(c.rows_left);
    const double finish = by_rows       ? rows
                          : measured(c) ? rows * 1000.0 / c.rows_per_second
                                        : rows * 1000.0 / mean_rate;
    all.push_back(Projected{finish, &c});
    total += finish;
  }
  // The fleet's finish if the remaining work were spread evenly over the
  // busy owners and the idle workers.
  const double fleet = total / static_cast<double>(all.size() + idle);
  std::sort(all.begin(), all.end(),
            [](const Projected& a, const Projected& b) { return a.finish > b.finish; });
  for (const Projected& p : all) {
    if (out.size() >= idle) break;
    if (p.c->asked) continue;
    const uint64_t min_rows = measured(*p.c) ? options.min_rows : options.min_rows_unmeasured;
    if (p.c->rows_left < min_rows) continue;
    if (!by_rows && p.finish < static_cast<double>(options.min_finish_ms)) continue;
    if (p.finish < options.behind * fleet) continue;
    out.push_back(SplitAsk{p.c->range, p.c->rows_left / 2});
  }
  return out;
}

std::vector<SplitAsk> ForceSplits(const std::vector<SplitCandidate>& candidates,
                                  const SplitPolicyOptions& options) {
  std::vector<SplitAsk> out;
  for (const SplitCandidate& c : candidates) {
    if (!c.asked && c.rows_left >= options.min_rows) {
      out.push_back(SplitAsk{c.range, c.rows_left / 2});
    }
  }
  return out;
}

}  // namespace ferry
