// The coordinator's side of the wire: one worker frame (a Cap'n Proto
// Envelope, schemas/ferry.capnp) in, a typed Request (coordinator/messages.h)
// out; a typed Reply in, one frame out.
//
// Every frame is hostile: size limits, alignment and traversal limits are
// enforced by DecodeEnvelope (common/wire.h), every field is read inside a
// try/catch here, and a frame that is malformed, of another protocol
// version, of an unknown or unexpected type, or with a worker id outside
// 1..256 bytes comes back as a RejectedFrame carrying the error reply to
// send (with the request id when it could be read).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <memory>
#include <variant>
#include <zmq.hpp>

#include "common/wire.h"
#include "coordinator/messages.h"

namespace ferry {

struct DecodedRequest {
  uint64_t request_id = 0;
  Request request;
  // Owns the bytes the request's string_views point into.
  std::unique_ptr<DecodedEnvelope> frame;
};

struct RejectedFrame {
  uint64_t request_id = 0;
  ErrorReply error;  // kBadMessage or kVersionMismatch (or kInternal)
};

std::variant<DecodedRequest, RejectedFrame> DecodeRequest(const void* data, size_t size);

zmq::message_t EncodeReply(uint64_t request_id, const Reply& reply);

}  // namespace ferry
