// Binary wire helpers of PgStore (stores/postgresql/pg_internal.h).
#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "stores/postgresql/pg_internal.h"

namespace ferry {
namespace pg_wire {

uint64_t ReadBe(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void PutBe(std::string* out, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::string DoubleText(double d, bool point_zero) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  std::string s = fmt::format("{}", d);
  if (point_zero && s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

bool ParseInt(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  *out = v;
  return true;
}

bool ParseDouble(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return false;
  *out = v;
  return true;
}

const char* KindName(const Value& v) {
  switch (v.index()) {
    case 1:
      return "integer";
    case 2:
      return "real";
    case 3:
      return "text";
    case 4:
      return "blob";
    default:
      return "null";
  }
}

}  // namespace pg_wire
}  // namespace ferry
