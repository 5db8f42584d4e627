// ferryctl's online-migration commands (README "Online migrations").
//
//   cutover [--timeout S]   asks the coordinator's status socket `cutover S`
//                           and waits for the outcome: exit 0 once the
//                           migration is complete, 1 if the cut-over failed
//                           (the migration is back in catching_up, the reason
//                           printed) or was refused (e.g. still copying), 6 if
//                           it timed out (the coordinator's timeout, or no
//                           outcome 10 s after it).
//   unguard --source URI [--tables a,b]
//                           removes the write-refusal guard a finished online
//                           migration left on the legacy store (every guarded
//                           table, or the listed ones) and any change capture
//                           left by an abandoned one; prints what it removed.
//                           Needs no coordinator. Do not run it while an
//                           online migration of that store is running.
//
// Thread safety: functions, for ferryctl's main thread.
#pragma once

#include <string>
#include <zmq.hpp>

#include "common/curve.h"

namespace ferry {

int CutoverCommand(zmq::context_t& ctx, const std::string& endpoint, double timeout_s,
                   int request_ms, const CurveClientKeys& curve);

int UnguardCommand(const std::string& source_uri, const std::string& tables);

}  // namespace ferry
