#include "spec/replay_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "common/key_codec.h"

namespace ferry {

std::vector<TableSchema> CapturedTables(const std::vector<TargetPlan>& targets) {
  std::vector<TableSchema> out;
  std::set<std::string> seen;
  for (const TargetPlan& p : targets) {
    if (seen.insert(p.source.name).second) out.push_back(p.source);
  }
  return out;
}

Status CheckReplayable(const TargetPlan& plan) {
  if (plan.identity() || plan.has_lua()) return Status::Ok();
  std::vector<int> source_key;
  if (plan.source.rowid_key()) {
    source_key.push_back(0);
  } else {
    for (size_t k : plan.source.key_columns) source_key.push_back(static_cast<int>(k));
  }
  std::vector<size_t> write_key = plan.write.key_columns;
  if (plan.write.rowid_key()) write_key = {0};
  bool carried = write_key.size() == source_key.size();
  for (size_t i = 0; carried && i < write_key.size(); ++i) {
    const size_t k = write_key[i];
    carried = k < plan.projected.size() && plan.projected[k].source_cell == source_key[i];
  }
  if (carried) return Status::Ok();
  return InvalidArgument(fmt::format(
      "--online cannot replay changes into target {}: its primary key is not the key of legacy "
      "table {} carried as it is (same columns, same order), so a deleted legacy row could not "
      "be found in it; key the target by the legacy key, or migrate it offline",
      plan.entry.target, plan.source.name));
}

std::string TargetKeyOf(const TargetPlan& plan, const Value* row) {
  std::string k;
  if (plan.write.rowid_key()) {
    AppendKeyElement(row[0], &k);
  } else {
    for (size_t c : plan.write.key_columns) AppendKeyElement(row[c], &k);
  }
  return k;
}

}  // namespace ferry
