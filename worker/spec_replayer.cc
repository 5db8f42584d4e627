#include "worker/spec_replayer.h"

#include <fmt/format.h>

#include <unordered_set>

#include "common/key_codec.h"
#include "spec/replay_plan.h"

namespace ferry {

Result<std::unique_ptr<SpecReplayer>> SpecReplayer::Create(const std::vector<TargetPlan>* plans,
                                                           Store* source) {
  std::unique_ptr<SpecReplayer> r(new SpecReplayer(source));
  for (const TargetPlan& p : *plans) {
    Target t;
    t.plan = &p;
    if (p.has_lua()) {
      FERRY_ASSIGN_OR_RETURN(t.lua, MakeTransform(p));
    }
    r->by_source_.emplace(p.source.name, std::move(t));
  }
  return r;
}

Status SpecReplayer::ReadProjectedKeys(const TargetPlan& p, const std::vector<std::string>& keys,
                                       RowBatch* out) {
  out->Clear();
  out->width = p.projected.size();
  for (const std::string& k : keys) {
    // The first row at or after the key that passes `where`: the key's own
    // row, or none for it.
    const KeyRange from{p.source.name, k, ""};
    FERRY_RETURN_IF_ERROR(
        source_->ReadProjected(p.source, p.projection, from, "", 1, SIZE_MAX, &one_));
    if (one_.rows() == 0 || one_.keys[0] != k) continue;
    out->width = one_.width;
    out->keys.push_back(one_.keys[0]);
    for (size_t c = 0; c < one_.width; ++c) out->cells.push_back(one_.cells[c]);
    out->bytes += one_.bytes;
  }
  return Status::Ok();
}

Status SpecReplayer::Replay(const std::string& table, const std::vector<std::string>& keys,
                            std::vector<TableChanges>* out) {
  auto [begin, end] = by_source_.equal_range(table);
  if (begin == end) {
    return Permanent(fmt::format("changed table {} is not a source of any target", table));
  }
  for (auto it = begin; it != end; ++it) {
    const TargetPlan& p = *it->second.plan;
    TableChanges tc;
    tc.table = &p.write;
    if (p.projection.identity() && !p.has_lua()) {
      FERRY_RETURN_IF_ERROR(source_->ReadKeys(p.source, keys, &tc.upserts));
    } else {
      FERRY_RETURN_IF_ERROR(ReadProjectedKeys(p, keys, &read_));
      if (it->second.lua) {
        TransformBatch(p, it->second.lua.get(), read_, &tc.upserts, &rejects_);
        // A row whose target key is not its legacy key: a later delete
        // could not find it.
        RowBatch& rows = tc.upserts;
        const size_t width = rows.width;
        size_t n = 0;
        for (size_t r = 0; r < rows.rows(); ++r) {
          if (TargetKeyOf(p, rows.row(r)) != rows.keys[r]) {
            rejects_.push_back(Reject{p.entry.target, KeyToFullString(rows.keys[r]),
                                      "online mode: the Lua function changed the row's key (a "
                                      "replayed delete could not find it)"});
            continue;
          }
          if (n != r) {
            rows.keys[n] = std::move(rows.keys[r]);
            for (size_t c = 0; c < width; ++c) {
              rows.cells[n * width + c] = std::move(rows.cells[r * width + c]);
            }
          }
          ++n;
        }
        rows.keys.resize(n);
        rows.cells.resize(n * width);
      } else {
        tc.upserts = read_;
      }
    }
    const std::unordered_set<std::string> kept(tc.upserts.keys.begin(), tc.upserts.keys.end());
    for (const std::string& k : keys) {
      if (!kept.count(k)) tc.deletes.push_back(k);
    }
    out->push_back(std::move(tc));
  }
  return Status::Ok();
}

}  // namespace ferry
