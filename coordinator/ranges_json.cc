#include "coordinator/ranges_json.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "common/key_codec.h"

namespace ferry {
namespace {

// `s` as a JSON string, exactly as nlohmann::json's dump(replace) writes it.
// Printable ASCII without quote or backslash (keys, names: nearly all) is
// copied as it is; anything else goes through nlohmann's own serializer.
void AppendString(std::string& out, const std::string& s) {
  bool plain = true;
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  }
  if (plain) {
    out += '"';
    out += s;
    out += '"';
    return;
  }
  out += nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void AppendKey(std::string& out, const char* key) {
  out += '"';
  out += key;
  out += "\":";
}

void AppendField(std::string& out, const char* key, const std::string& value) {
  AppendKey(out, key);
  AppendString(out, value);
  out += ',';
}

template <typename N>
void AppendField(std::string& out, const char* key, N value) {
  AppendKey(out, key);
  fmt::format_to(std::back_inserter(out), "{}", value);
  out += ',';
}

}  // namespace

RangesJsonWriter::RangesJsonWriter() : out_("{\"ranges\":[") {}

void RangesJsonWriter::Add(const RangeRecord& r, const std::string* reason) {
  if (!first_) out_ += ',';
  first_ = false;
  out_ += '{';
  // Sorted by key, as nlohmann::json (std::map) orders them.
  AppendField(out_, "attempts", r.attempts);
  AppendField(out_, "bytes", r.bytes);
  AppendField(out_, "cursor", KeyToString(r.cursor));
  AppendField(out_, "deadline_ms", r.deadline_ms);
  AppendField(out_, "epoch", r.epoch);
  AppendField(out_, "errors", r.errors);
  AppendField(out_, "est_rows", r.est_rows);
  AppendField(out_, "hi", r.hi.empty() ? std::string("(end)") : KeyToString(r.hi));
  AppendField(out_, "id", r.id);
  AppendField(out_, "last_error", r.last_error);
  AppendField(out_, "lo", r.lo.empty() ? std::string("(start)") : KeyToString(r.lo));
  AppendField(out_, "owner", r.owner);
  if (reason) AppendField(out_, "reason", *reason);
  AppendField(out_, "rejected", r.rejected);
  AppendField(out_, "rows", r.rows);
  AppendField(out_, "state", std::string(RangeStateName(r.state)));
  AppendField(out_, "table", r.table);
  out_.back() = '}';
}

std::string RangesJsonWriter::Finish() {
  out_ += "]}";
  return std::move(out_);
}

}  // namespace ferry
