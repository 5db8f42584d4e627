# Turns the dashboard page into a C++ source (cmake -P, run by the build):
#   cmake -DINPUT=index.html -DOUTPUT=dashboard_page.cc -P embed.cmake
# The page stays a readable HTML file in the repository; the binary carries
# it as one raw string literal (coordinator/dashboard_page.h).
file(READ "${INPUT}" page)
set(delimiter "ferry_page")
string(FIND "${page}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains )${delimiter}\" and cannot be embedded as a raw string")
endif()
string(LENGTH "${page}" size)
file(WRITE "${OUTPUT}.tmp"
"// Generated from coordinator/dashboard/index.html by coordinator/dashboard/embed.cmake.
#include \"coordinator/dashboard_page.h\"

namespace ferry {
const char kDashboardPage[] = R\"${delimiter}(${page})${delimiter}\";
const size_t kDashboardPageSize = sizeof(kDashboardPage) - 1;
}  // namespace ferry
")
# Only touch the output when it changed (no needless recompiles).
configure_file("${OUTPUT}.tmp" "${OUTPUT}" COPYONLY)
file(REMOVE "${OUTPUT}.tmp")
