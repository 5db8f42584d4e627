// The worker side of the coordinator: decoding worker messages, answering
// them (register, lease requests, heartbeats, completions, releases, error
// reports) and the lease requests that wait for a range. Runs on the
// coordinator's event-loop thread, like everything in Coordinator.
#include <capnp/message.h>
#include <fmt/format.h>

#include "common/key_codec.h"
#include "common/logging.h"
#include "common/version.h"
#include "common/wire.h"
#include "coordinator/coordinator.h"

namespace ferry {
namespace {

constexpr size_t kMaxIdBytes = 256;
// First segment of a reply's builder: replies are a few hundred bytes, and
// the default (8 KiB, zeroed) was a calloc per message; larger ones grow.
constexpr unsigned kReplyFirstSegmentWords = 128;
// How long a lease request may wait for a range to come free before it is
// answered "no work, ask again": well under a worker's 2 s request timeout.
constexpr int64_t kLeaseWaitMs = 1000;

zmq::message_t ErrorFrame(uint64_t request_id, Error::Code code, const std::string& message,
                          uint64_t range = 0, uint64_t epoch = 0) {
  capnp::MallocMessageBuilder b(kReplyFirstSegmentWords);
  auto env = NewEnvelope(b, request_id);
  auto e = env.getBody().initError();
  e.setCode(code);
  e.setMessage(message.substr(0, 1024));
  e.setRangeId(range);
  e.setEpoch(epoch);
  return ToFrame(b);
}

}  // namespace

void Coordinator::HandleWorkerFrames(std::vector<zmq::message_t>& frames) {
  if (frames.empty()) return;
  if (frames.size() != 2) {
    metrics_.malformed++;
    LogEvent(spdlog::level::debug, "malformed",
             {{"reason", "frame count"}, {"frames", frames.size()}});
    if (frames.size() > 1) {
      replies_.push_back(
          Reply{std::move(frames[0]),
                ErrorFrame(0, Error::Code::BAD_MESSAGE, "send exactly one frame per message")});
    }
    return;
  }
  zmq::message_t reply = Dispatch(frames[0], frames[1].data(), frames[1].size());
  if (reply.size() > 0) replies_.push_back(Reply{std::move(frames[0]), std::move(reply)});
}

WorkerInfo* Coordinator::TouchWorker(const std::string& id) {
  auto it = workers_.find(id);
  if (it == workers_.end()) return nullptr;
  it->second.row.last_seen_ms = clock_->NowMs();
  return &it->second;
}

zmq::message_t Coordinator::Dispatch(zmq::message_t& identity, const void* data, size_t size) {
  auto decoded = DecodeEnvelope(data, size);
  if (!decoded.ok()) {
    metrics_.malformed++;
    LogEvent(spdlog::level::debug, "malformed", {{"reason", decoded.status().message()}});
    return ErrorFrame(0, Error::Code::BAD_MESSAGE, decoded.status().message());
  }
  uint64_t rid = 0;
  try {
    Envelope::Reader env = (*decoded)->root();
    rid = env.getRequestId();
    if (env.getProtocolVersion() != kProtocolVersion) {
      metrics_.version_mismatch++;
      return ErrorFrame(rid, Error::Code::VERSION_MISMATCH,
                        fmt::format("worker speaks protocol version {}, coordinator speaks {}: run "
                                    "the same ferry version on both",
                                    env.getProtocolVersion(), kProtocolVersion));
    }
    capnp::MallocMessageBuilder b(kReplyFirstSegmentWords);
    auto out = NewEnvelope(b, rid);
    auto body = env.getBody();
    auto check_id = [](capnp::Text::Reader t) { return t.size() > 0 && t.size() <= kMaxIdBytes; };
    switch (body.which()) {
      case Envelope::Body::REGISTER: {
        auto m = body.getRegister();
        if (!check_id(m.getWorkerId())) {
          metrics_.malformed++;
          return ErrorFrame(rid, Error::Code::BAD_MESSAGE, "worker id must be 1..256 bytes");
        }
        std::string id(AsView(m.getWorkerId()));
        int64_t now = clock_->NowMs();
        WorkerInfo& w = workers_[id];
        bool fresh = w.row.id.empty();
        w.row = WorkerRow{id,
                          std::string(AsView(m.getHost())).substr(0, 256),
                          static_cast<int64_t>(m.getPid()),
                          std::string(AsView(m.getVersion())).substr(0, 64),
                          fresh ? now : w.row.registered_ms,
                          now,
                          "active"};
        w.draining = false;
        dirty_workers_.push_back(w.row);
        Record(
            Event{now, "register", 0, 0, id,
                  fmt::format("host={} pid={} version={}", w.row.host, w.row.pid, w.row.version)});
        auto r = out.getBody().initRegistered();
        r.setSourceUri(opt_.source_uri);
        r.setTargetUri(opt_.target_uri);
        r.setBatchRows(opt_.batch_rows);
        r.setLeaseTtlMs(static_cast<uint32_t>(table_.ttl_ms()));
        r.setHeartbeatMs(static_cast<uint32_t>(std::clamp<int64_t>(table_.ttl_ms() / 5, 20, 1000)));
        r.setPlanId(job_.plan_id);
        r.setToVersion(job_.to_version);
        return ToFrame(b);
      }
      case Envelope::Body::LEASE_REQUEST: {
        metrics_.lease_requests++;
        std::string id(AsView(body.getLeaseRequest().getWorkerId()));
        WorkerInfo* w = TouchWorker(id);
        if (!w) return ErrorFrame(rid, Error::Code::UNKNOWN_WORKER, "register first");
        return LeaseReply(rid, id, w, &identity);
      }
      case Envelope::Body::HEARTBEAT:
      case Envelope::Body::COMPLETE:
      case Envelope::Body::RELEASE: {
        std::string id;
        uint64_t range = 0, epoch = 0;
        Progress p;
        const auto which = body.which();
        if (which == Envelope::Body::HEARTBEAT) {
          auto m = body.getHeartbeat();
          id = AsView(m.getWorkerId());
          range = m.getRangeId();
          epoch = m.getEpoch();
          p = Progress{AsView(m.getCursor()), m.getRowsDone(), m.getBytesDone(), m.getDigest()};
        } else if (which == Envelope::Body::COMPLETE) {
          auto m = body.getComplete();
          id = AsView(m.getWorkerId());
          range = m.getRangeId();
          epoch = m.getEpoch();
          p = Progress{AsView(m.getCursor()), m.getRows(), m.getBytes(), m.getDigest()};
        } else {
          auto m = body.getRelease();
          id = AsView(m.getWorkerId());
          range = m.getRangeId();
          epoch = m.getEpoch();
          p = Progress{AsView(m.getCursor()), m.getRowsDone(), m.getBytesDone(), m.getDigest()};
        }
        WorkerInfo* w = TouchWorker(id);
        const RangeRecord* before = table_.Find(range);
        uint64_t rows_before = before ? before->rows : 0;
        const bool was_done = before && before->state == RangeState::kDone;
        Status s;
        if (which == Envelope::Body::HEARTBEAT) {
          s = table_.Heartbeat(range, epoch, id, p);
        } else if (which == Envelope::Body::COMPLETE) {
          s = table_.Complete(range, epoch, id, p);
        } else {
          s = table_.Release(range, epoch, id, p);
        }
        if (!s.ok()) {
          metrics_.lease_lost++;
          if (w && w->current_range == range) w->current_range = 0;
          LogEvent(spdlog::level::info, "lease_lost",
                   {{"range", range}, {"epoch", epoch}, {"worker", id}, {"why", s.message()}});
          return ErrorFrame(rid, Error::Code::LEASE_LOST, s.message(), range, epoch);
        }
        if (p.rows > rows_before) {
          metrics_.progress_rows.Observe(static_cast<double>(p.rows - rows_before));
          if (w) w->rows += p.rows - rows_before;
        }
        if (which == Envelope::Body::COMPLETE) {
          if (w && w->current_range == range) w->current_range = 0;
          if (!was_done) metrics_.completions++;  // else a retry whose answer was lost
          if (!was_done && spdlog::should_log(spdlog::level::info)) {
            LogRoutine("complete", range, epoch, id,
                       fmt::format("rows={} bytes={} digest={:016x}", p.rows, p.bytes, p.digest));
          }
          // A retried completion (our answer was lost) finds the range done
          // under the same epoch and gets the same next lease again.
          if (w && body.getComplete().getNext()) return LeaseReply(rid, id, w, &identity);
        } else if (which == Envelope::Body::RELEASE) {
          if (w && w->current_range == range) w->current_range = 0;
          if (w && body.getRelease().getLeaving()) {
            w->row.state = "gone";
            dirty_workers_.push_back(w->row);
          }
          metrics_.releases++;
          Record(Event{clock_->NowMs(), "release", range, epoch, id,
                       fmt::format("cursor={} rows={}", KeyToString(p.cursor), p.rows)});
        }
        auto a = out.getBody().initAck();
        a.setRangeId(range);
        a.setEpoch(epoch);
        a.setLeaseTtlMs(static_cast<uint32_t>(table_.ttl_ms()));
        a.setPaused(job_.paused);
        a.setDrain(w && w->draining);
        a.setRowsPerSecond(ThrottleShare());
        return ToFrame(b);
      }
      case Envelope::Body::REPORT_ERROR: {
        auto m = body.getReportError();
        std::string id(AsView(m.getWorkerId()));
        std::string msg(AsView(m.getMessage()).substr(0, 1024));
        WorkerInfo* w = TouchWorker(id);
        if (m.getRangeId() == 0 && w) {
          // A registered worker that cannot use its stores (its new store is
          // not ours, its legacy store cannot be read) says so and leaves.
          w->row.state = "gone";
          dirty_workers_.push_back(w->row);
          last_range_error_ = fmt::format("worker {}: {}", id, msg);
          Record(Event{clock_->NowMs(), "worker_refused", 0, 0, id, msg});
          auto a = out.getBody().initAck();
          a.setPaused(job_.paused);
          return ToFrame(b);
        }
        Status s = table_.ReportError(m.getRangeId(), m.getEpoch(), id, m.getPermanent(), msg);
        if (!s.ok()) {
          metrics_.lease_lost++;
          return ErrorFrame(rid, Error::Code::LEASE_LOST, s.message(), m.getRangeId(),
                            m.getEpoch());
        }
        if (w && w->current_range == m.getRangeId()) w->current_range = 0;
        metrics_.range_errors++;
        const RangeRecord* r = table_.Find(m.getRangeId());
        last_range_error_ = fmt::format("range {} ({}): {}", r->id, r->table, msg);
        Record(Event{clock_->NowMs(),
                     r->state == RangeState::kFailed ? "range_failed" : "range_error",
                     m.getRangeId(), m.getEpoch(), id, msg});
        auto a = out.getBody().initAck();
        a.setRangeId(m.getRangeId());
        a.setEpoch(m.getEpoch());
        a.setPaused(job_.paused);
        return ToFrame(b);
      }
      default:
        metrics_.malformed++;
        return ErrorFrame(rid, Error::Code::BAD_MESSAGE, "unknown or unexpected message type");
    }
  } catch (const kj::Exception& e) {
    metrics_.malformed++;
    return ErrorFrame(rid, Error::Code::BAD_MESSAGE,
                      fmt::format("malformed message: {}", e.getDescription().cStr()));
  } catch (const std::exception& e) {
    metrics_.malformed++;
    return ErrorFrame(rid, Error::Code::INTERNAL,
                      fmt::format("cannot handle message: {}", e.what()));
  }
}

zmq::message_t Coordinator::LeaseReply(uint64_t rid, const std::string& id, WorkerInfo* w,
                                       zmq::message_t* wait_from) {
  capnp::MallocMessageBuilder b(kReplyFirstSegmentWords);
  auto out = NewEnvelope(b, rid);
  auto nowork = [&](uint32_t retry_ms) {
    auto n = out.getBody().initNoWork();
    n.setRetryAfterMs(retry_ms);
    n.setComplete(complete());
    n.setFailed(failed());
    n.setPaused(job_.paused);
    n.setDraining(w->draining);
    return ToFrame(b);
  };
  if (!complete() && !failed() && !planning_ && table_.AllDone()) {
    MaybeFinish();  // this message completed the last range: say so now
  }
  if (complete() || failed() || w->draining) {
    if (complete() || failed()) w->told_done = true;
    return nowork(0);
  }
  if (planning_) return nowork(200);
  const RangeRecord* r = nullptr;
  if (w->current_range) {
    // The worker lost our grant reply: give it the same lease again.
    const RangeRecord* held = table_.Find(w->current_range);
    if (held && held->state == RangeState::kLeased && held->owner == id) r = held;
  }
  if (!r) {
    if (job_.paused) return nowork(500);
    r = table_.Grant(id);
    if (!r) {
      if (wait_from && table_.count(RangeState::kLeased) > 0) {
        // Nothing pending, but leased ranges may come back (expiry, release)
        // or finish the job: hold the request and answer it the moment one
        // of those happens (ServeWaiting), instead of having the worker poll.
        Waiting& wt = waiting_[id];
        wt.identity.copy(*wait_from);
        wt.rid = rid;
        wt.deadline_ms = clock_->NowMs() + kLeaseWaitMs;
        return zmq::message_t();
      }
      return nowork(wait_from ? 250 : 10);
    }
    metrics_.grants++;
    w->current_range = r->id;
    if (spdlog::should_log(spdlog::level::info)) {
      LogRoutine("grant", r->id, r->epoch, id,
                 fmt::format("table={} cursor={}", r->table, KeyToString(r->cursor)));
    }
  }
  auto g = out.getBody().initGrant();
  g.setRangeId(r->id);
  g.setEpoch(r->epoch);
  g.setTable(r->table);
  g.setLo(AsData(r->lo));
  g.setHi(AsData(r->hi));
  g.setCursor(AsData(r->cursor));
  g.setLeaseTtlMs(static_cast<uint32_t>(table_.ttl_ms()));
  g.setRowsDone(r->rows);
  g.setBytesDone(r->bytes);
  g.setDigest(r->digest);
  g.setRowsPerSecond(ThrottleShare());
  return ToFrame(b);
}

void Coordinator::ServeWaiting() {
  if (waiting_.empty()) return;
  const int64_t now = clock_->NowMs();
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    auto wi = workers_.find(it->first);
    WorkerInfo* w = wi == workers_.end() ? nullptr : &wi->second;
    const bool answer = !w || complete() || failed() || w->draining || job_.paused ||
                        now >= it->second.deadline_ms || table_.count(RangeState::kPending) > 0;
    if (!answer) {
      ++it;
      continue;
    }
    zmq::message_t reply =
        w ? LeaseReply(it->second.rid, it->first, w, /*wait_from=*/nullptr)
          : ErrorFrame(it->second.rid, Error::Code::UNKNOWN_WORKER, "register first");
    replies_.push_back(Reply{std::move(it->second.identity), std::move(reply)});
    it = waiting_.erase(it);
  }
}

uint64_t Coordinator::ThrottleShare() const {
  if (job_.throttle_rows_per_s == 0) return 0;
  // One share per lease held (a worker holds at most one): O(1), where
  // counting workers would cost O(workers) on every grant and ack.
  const uint64_t active = table_.count(RangeState::kLeased);
  return std::max<uint64_t>(1, job_.throttle_rows_per_s / std::max<uint64_t>(1, active));
}

}  // namespace ferry
