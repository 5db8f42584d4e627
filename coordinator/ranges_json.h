// The status socket's `ranges` answer, {"ranges": [{…}, …]}, written straight
// into one string: byte for byte what building it as a nlohmann::json tree and
// dump()ing it (error_handler_t::replace) gives — keys in the same (sorted)
// order, strings escaped the same way — without the tree. For a plan of
// 100,000 ranges the tree took ~0.8 s of the event loop and ~400 MB of memory
// (the coordinator's peak RSS went from ~50 to ~460 MB); this takes a small
// fraction of the time and about the size of the answer.
//
// Thread confinement: a writer is used by one thread (the event loop).
#pragma once

#include <string>

#include "coordinator/range_record.h"

namespace ferry {

class RangesJsonWriter {
 public:
  RangesJsonWriter();
  // Appends one range; `reason` (the `stalled` filter's "why") when non-null.
  void Add(const RangeRecord& r, const std::string* reason = nullptr);
  // The answer; the writer is spent.
  std::string Finish();

 private:
  std::string out_;
  bool first_ = true;
};

}  // namespace ferry
