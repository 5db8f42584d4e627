// RangesJsonWriter (coordinator/ranges_json.h) writes the same bytes as the
// nlohmann::json tree the status socket's `ranges` used to build, for awkward
// strings too, and faster.
#include "coordinator/ranges_json.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/key_codec.h"

namespace ferry {
namespace {

// The reference: the tree `ranges` built before the writer.
std::string TreeJson(const std::vector<RangeRecord>& ranges, const std::string* reason) {
  nlohmann::json arr = nlohmann::json::array();
  for (const RangeRecord& r : ranges) {
    nlohmann::json j = {{"id", r.id},
                        {"table", r.table},
                        {"lo", r.lo.empty() ? "(start)" : KeyToString(r.lo)},
                        {"hi", r.hi.empty() ? "(end)" : KeyToString(r.hi)},
                        {"state", RangeStateName(r.state)},
                        {"owner", r.owner},
                        {"epoch", r.epoch},
                        {"deadline_ms", r.deadline_ms},
                        {"cursor", KeyToString(r.cursor)},
                        {"rows", r.rows},
                        {"rejected", r.rejected},
                        {"est_rows", r.est_rows},
                        {"bytes", r.bytes},
                        {"attempts", r.attempts},
                        {"errors", r.errors},
                        {"last_error", r.last_error},
                        {"parent", r.parent},
                        {"repaired", r.rows_repaired},
                        {"verified", r.verified},
                        {"verifying", r.state == RangeState::kLeased && r.verify_lease}};
    if (reason) j["reason"] = *reason;
    arr.push_back(std::move(j));
  }
  return nlohmann::json{{"ranges", arr}}.dump(-1, ' ', false,
                                              nlohmann::json::error_handler_t::replace);
}

std::string WriterJson(const std::vector<RangeRecord>& ranges, const std::string* reason) {
  RangesJsonWriter w;
  for (const RangeRecord& r : ranges) w.Add(r, reason);
  return w.Finish();
}

std::vector<RangeRecord> AwkwardRanges() {
  std::vector<RangeRecord> v;
  const std::string texts[] = {"",
                               "plain",
                               "quote \" and backslash \\",
                               "tab\tnewline\ncr\r\x01\x1f\x7f",
                               "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\xa2",
                               "invalid \xff\xfe utf-8 \xc3",
                               std::string("nul \0 inside", 12)};
  uint64_t id = 1;
  for (const std::string& t : texts) {
    RangeRecord r;
    r.id = id++;
    r.table = "table " + t;
    r.lo = id % 2 ? "" : std::string("\x15\x01\x02", 3);
    r.hi = t;
    r.cursor = t;
    r.state = static_cast<RangeState>(id % 4);
    r.owner = t;
    r.epoch = UINT64_MAX - id;
    r.deadline_ms = -static_cast<int64_t>(id) * 1000000007;
    r.rows = id * 1000;
    r.rejected = id % 3;
    r.est_rows = id;
    r.bytes = UINT64_MAX;
    r.attempts = UINT32_MAX;
    r.errors = 3;
    r.last_error = t;
    r.parent = id % 3;
    r.rows_repaired = id * 7;
    r.verified = id % 2;
    r.verify_lease = id % 3 == 0;
    v.push_back(r);
  }
  return v;
}

TEST(RangesJsonTest, SameBytesAsTheJsonTree) {
  const auto ranges = AwkwardRanges();
  EXPECT_EQ(WriterJson(ranges, nullptr), TreeJson(ranges, nullptr));
  const std::string reason = "heartbeats without progress \"x\"";
  EXPECT_EQ(WriterJson(ranges, &reason), TreeJson(ranges, &reason));
  EXPECT_EQ(WriterJson({}, nullptr), TreeJson({}, nullptr));
  auto parsed = nlohmann::json::parse(WriterJson(ranges, nullptr), nullptr, false);
  ASSERT_TRUE(parsed.is_object());
  EXPECT_EQ(parsed["ranges"].size(), ranges.size());
}

TEST(RangesJsonTest, HundredThousandRangesWithoutTheTree) {
  std::vector<RangeRecord> ranges(100000);
  for (size_t i = 0; i < ranges.size(); ++i) {
    RangeRecord& r = ranges[i];
    r.id = i + 1;
    r.table = "accounts";
    r.lo = i ? fmt::format("\x15{:c}", static_cast<char>(i % 100 + 1)) : "";
    r.hi = fmt::format("\x15{:c}", static_cast<char>(i % 100 + 2));
    r.state = static_cast<RangeState>(i % 3);
    r.owner = i % 3 == 1 ? "worker-7" : "";
    r.epoch = i;
    r.rows = 100;
    r.est_rows = 100;
  }
  auto time = [](auto f) {
    auto t0 = std::chrono::steady_clock::now();
    std::string s = f();
    auto t1 = std::chrono::steady_clock::now();
    return std::make_pair(std::chrono::duration<double, std::milli>(t1 - t0).count(), s);
  };
  auto [tree_ms, tree] = time([&] { return TreeJson(ranges, nullptr); });
  auto [writer_ms, written] = time([&] { return WriterJson(ranges, nullptr); });
  std::cout << fmt::format("100,000 ranges, {:.1f} MB: json tree {:.0f} ms, writer {:.0f} ms\n",
                           written.size() / 1e6, tree_ms, writer_ms);
  EXPECT_EQ(written, tree);
}

}  // namespace
}  // namespace ferry
