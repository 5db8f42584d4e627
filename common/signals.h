// Process-wide stop request set by SIGTERM / SIGINT. Loops poll the flag
// between batches / poll timeouts (at most ~100 ms apart).
#pragma once

#include <atomic>

namespace ferry {

// Installs handlers for SIGTERM and SIGINT; ignores SIGPIPE and SIGXFSZ.
void InstallStopSignals();
// The flag the handlers set.
std::atomic<bool>* StopFlag();
bool StopRequested();
// For tests and embedded mode.
void RequestStop();

}  // namespace ferry
