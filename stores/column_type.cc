#include "stores/column_type.h"

#include <fmt/format.h>

namespace ferry {

const char* TypeKindName(TypeKind kind) {
  switch (kind) {
    case TypeKind::kAny:
      return "any";
    case TypeKind::kBoolean:
      return "boolean";
    case TypeKind::kInteger:
      return "integer";
    case TypeKind::kReal:
      return "real";
    case TypeKind::kNumeric:
      return "numeric";
    case TypeKind::kText:
      return "text";
    case TypeKind::kBlob:
      return "blob";
    case TypeKind::kDate:
      return "date";
    case TypeKind::kTime:
      return "time";
    case TypeKind::kTimeTz:
      return "timetz";
    case TypeKind::kTimestamp:
      return "timestamp";
    case TypeKind::kTimestampTz:
      return "timestamptz";
    case TypeKind::kInterval:
      return "interval";
    case TypeKind::kUuid:
      return "uuid";
    case TypeKind::kJson:
      return "json";
    case TypeKind::kOther:
      return "other";
  }
  return "?";
}

std::string ToString(const ColumnType& type) {
  std::string out = TypeKindName(type.kind);
  if (type.bits > 0) out += fmt::format("/{}", type.bits);
  if (type.precision >= 0 && type.scale >= 0) {
    out += fmt::format("({},{})", type.precision, type.scale);
  } else if (type.precision >= 0) {
    out += fmt::format("({})", type.precision);
  }
  if (type.length >= 0)
    out += fmt::format("({}{})", type.fixed_length ? "fixed " : "", type.length);
  return out;
}

}  // namespace ferry
