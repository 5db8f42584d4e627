#include "coordinator/worker_codec.h"

#include <capnp/message.h>
#include <fmt/format.h>

#include "common/version.h"

namespace ferry {
namespace {

constexpr size_t kMaxIdBytes = 256;
// Repaired keys a report may list (the rest are counted), and their length.
constexpr size_t kMaxRepairedKeys = 20;
constexpr size_t kMaxKeyBytes = 1024;
// First segment of a reply's builder: replies are a few hundred bytes, and
// the default (8 KiB, zeroed) was a calloc per message; larger ones grow.
constexpr unsigned kReplyFirstSegmentWords = 128;

RejectedFrame Bad(uint64_t rid, std::string message) {
  return RejectedFrame{rid, ErrorReply{ErrorCode::kBadMessage, std::move(message)}};
}

ferry::LeaseRef ReadLeaseRef(::LeaseRef::Reader l) {
  return ferry::LeaseRef{l.getRangeId(), l.getEpoch(), std::string(AsView(l.getWorkerId()))};
}

Error::Code WireCode(ErrorCode c) {
  switch (c) {
    case ErrorCode::kBadMessage:
      return Error::Code::BAD_MESSAGE;
    case ErrorCode::kVersionMismatch:
      return Error::Code::VERSION_MISMATCH;
    case ErrorCode::kLeaseLost:
      return Error::Code::LEASE_LOST;
    case ErrorCode::kUnknownWorker:
      return Error::Code::UNKNOWN_WORKER;
    case ErrorCode::kUnavailable:
      return Error::Code::UNAVAILABLE;
    case ErrorCode::kInternal:
      break;
  }
  return Error::Code::INTERNAL;
}

uint32_t Ms32(int64_t ms) { return static_cast<uint32_t>(std::clamp<int64_t>(ms, 0, UINT32_MAX)); }

}  // namespace

std::variant<DecodedRequest, RejectedFrame> DecodeRequest(const void* data, size_t size) {
  auto decoded = DecodeEnvelope(data, size);
  if (!decoded.ok()) return Bad(0, decoded.status().message());
  DecodedRequest out;
  out.frame = std::move(decoded).value();
  try {
    Envelope::Reader env = out.frame->root();
    out.request_id = env.getRequestId();
    if (env.getProtocolVersion() != kProtocolVersion) {
      return RejectedFrame{
          out.request_id,
          ErrorReply{ErrorCode::kVersionMismatch,
                     fmt::format("worker speaks protocol version {}, coordinator speaks {}: run "
                                 "the same ferry version on both",
                                 env.getProtocolVersion(), kProtocolVersion)}};
    }
    auto body = env.getBody();
    switch (body.which()) {
      case Envelope::Body::REGISTER: {
        auto m = body.getRegister();
        if (m.getWorkerId().size() == 0 || m.getWorkerId().size() > kMaxIdBytes) {
          return Bad(out.request_id, "worker id must be 1..256 bytes");
        }
        out.request = RegisterRequest{std::string(AsView(m.getWorkerId())),
                                      std::string(AsView(m.getHost())),
                                      static_cast<int64_t>(m.getPid()),
                                      std::string(AsView(m.getVersion())),
                                      m.getSupportsSpec(),
                                      m.getFeatures()};
        return out;
      }
      case Envelope::Body::LEASE_REQUEST: {
        auto m = body.getLeaseRequest();
        out.request = LeaseRequest{std::string(AsView(m.getWorkerId())), m.getFeatures()};
        return out;
      }
      case Envelope::Body::REPORT: {
        auto m = body.getReport();
        ProgressReport r;
        switch (m.getKind()) {
          case Report::Kind::HEARTBEAT:
            r.kind = ReportKind::kHeartbeat;
            break;
          case Report::Kind::COMPLETE:
            r.kind = ReportKind::kComplete;
            break;
          case Report::Kind::RELEASE:
            r.kind = ReportKind::kRelease;
            break;
          default:
            return Bad(out.request_id, "unknown report kind");
        }
        r.lease = ReadLeaseRef(m.getLease());
        auto p = m.getProgress();
        r.progress = Progress{AsView(p.getCursor()), p.getRows(),     p.getBytes(),
                              p.getDigest(),         p.getRejected(), p.getRepaired()};
        r.next = m.getNext();
        r.leaving = m.getLeaving();
        r.features = m.getFeatures();
        r.split_key = AsView(m.getSplitKey());
        r.split_rows = m.getSplitRows();
        auto keys = m.getRepairedKeys();
        // A worker lists at most 20; more are counted, not kept.
        for (size_t i = 0; i < keys.size() && i < kMaxRepairedKeys; ++i) {
          r.repaired_keys.emplace_back(AsView(keys[i]).substr(0, kMaxKeyBytes));
        }
        r.repaired_more = m.getRepairedMore() +
                          (keys.size() > kMaxRepairedKeys ? keys.size() - kMaxRepairedKeys : 0);
        out.request = std::move(r);
        return out;
      }
      case Envelope::Body::REPORT_ERROR: {
        auto m = body.getReportError();
        out.request = ErrorReport{ReadLeaseRef(m.getLease()), m.getPermanent(),
                                  std::string(AsView(m.getMessage()).substr(0, 1024))};
        return out;
      }
      case Envelope::Body::APPLY_REPORT: {
        auto m = body.getApplyReport();
        ApplyReportRequest r;
        r.lease = ReadLeaseRef(m.getLease());
        r.position = m.getPosition();
        r.caught_up = m.getCaughtUp();
        r.applied = m.getApplied();
        r.pending = m.getPending();
        r.oldest_pending_ms = m.getOldestPendingMs();
        r.release = m.getRelease();
        r.leaving = m.getLeaving();
        r.error = std::string(AsView(m.getError()).substr(0, 1024));
        r.permanent = m.getPermanent();
        out.request = std::move(r);
        return out;
      }
      default:
        return Bad(out.request_id, "unknown or unexpected message type");
    }
  } catch (const kj::Exception& e) {
    return Bad(out.request_id, fmt::format("malformed message: {}", e.getDescription().cStr()));
  } catch (const std::exception& e) {
    return RejectedFrame{
        out.request_id,
        ErrorReply{ErrorCode::kInternal, fmt::format("cannot handle message: {}", e.what())}};
  }
}

zmq::message_t EncodeReply(uint64_t request_id, const Reply& reply) {
  capnp::MallocMessageBuilder b(kReplyFirstSegmentWords);
  auto body = NewEnvelope(b, request_id).getBody();
  if (const auto* r = std::get_if<RegisteredReply>(&reply)) {
    auto m = body.initRegistered();
    m.setSourceUri(r->source_uri);
    m.setTargetUri(r->target_uri);
    m.setBatchRows(r->batch_rows);
    m.setLeaseTtlMs(Ms32(r->policy.ttl_ms));
    m.setHeartbeatMs(Ms32(r->policy.heartbeat_ms));
    m.setSafetyMarginMs(Ms32(r->policy.safety_ms));
    m.setLivenessMs(Ms32(r->policy.liveness_ms));
    m.setGiveUpMs(Ms32(r->policy.give_up_ms));
    m.setPlanId(r->plan_id);
    m.setToVersion(r->to_version);
    if (!r->spec.empty()) m.setSpec(r->spec);
    m.setBatchTimeMs(r->batch_time_ms);
  } else if (const auto* g = std::get_if<GrantReply>(&reply)) {
    auto m = body.initGrant();
    m.setRangeId(g->range);
    m.setEpoch(g->epoch);
    m.setTable(g->table);
    m.setLo(AsData(g->lo));
    m.setHi(AsData(g->hi));
    m.setCursor(AsData(g->cursor));
    m.setLeaseTtlMs(Ms32(g->ttl_ms));
    m.setRowsDone(g->rows);
    m.setBytesDone(g->bytes);
    m.setDigest(g->digest);
    m.setRowsPerSecond(g->rows_per_second);
    m.setRejectedDone(g->rejected);
    m.setVerify(g->verify);
    m.setRowsRepaired(g->repaired);
    m.setParent(g->parent);
  } else if (const auto* n = std::get_if<NoWorkReply>(&reply)) {
    auto m = body.initNoWork();
    m.setRetryAfterMs(n->retry_after_ms);
    m.setComplete(n->complete);
    m.setPaused(n->paused);
    m.setFailed(n->failed);
    m.setDraining(n->draining);
  } else if (const auto* a = std::get_if<AckReply>(&reply)) {
    auto m = body.initAck();
    m.setRangeId(a->range);
    m.setEpoch(a->epoch);
    m.setLeaseTtlMs(Ms32(a->ttl_ms));
    m.setPaused(a->paused);
    m.setDrain(a->drain);
    m.setRowsPerSecond(a->rows_per_second);
    m.setDrainTo(a->drain_to);
    m.setSplit(a->split);
    m.setSplitKeep(a->split_keep);
    if (a->hi_valid) {
      m.setHiValid(true);
      m.setHi(AsData(a->hi));
    }
    m.setWaiting(a->waiting);
  } else if (const auto* g = std::get_if<ApplyGrantReply>(&reply)) {
    auto m = body.initApplyGrant();
    m.setEpoch(g->epoch);
    m.setLeaseTtlMs(Ms32(g->ttl_ms));
    m.setRangesTotal(g->ranges_total);
    m.setDrainTo(g->drain_to);
    auto tables = m.initTables(static_cast<unsigned>(g->tables.size()));
    for (size_t i = 0; i < g->tables.size(); ++i)
      tables.set(static_cast<unsigned>(i), g->tables[i]);
  } else if (const auto* e = std::get_if<ErrorReply>(&reply)) {
    auto m = body.initError();
    m.setCode(WireCode(e->code));
    m.setMessage(e->message.substr(0, 1024));
    m.setRangeId(e->range);
    m.setEpoch(e->epoch);
  }
  return ToFrame(b);
}

}  // namespace ferry
