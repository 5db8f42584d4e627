#include "common/signals.h"

#include <atomic>
#include <csignal>

namespace ferry {
namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }
}  // namespace

void InstallStopSignals() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // A file-size limit must surface as a write error (EFBIG), not kill us.
  signal(SIGXFSZ, SIG_IGN);
}

std::atomic<bool>* StopFlag() { return &g_stop; }
bool StopRequested() { return g_stop.load(); }
void RequestStop() { g_stop.store(true); }

}  // namespace ferry
