// The dashboard page (coordinator/dashboard/index.html), embedded at build
// time by coordinator/dashboard/embed.cmake into dashboard_page.cc in the
// build directory. Immutable; safe from any thread.
#pragma once

#include <cstddef>

namespace ferry {

extern const char kDashboardPage[];
extern const size_t kDashboardPageSize;  // bytes, without the terminating NUL

}  // namespace ferry
