// Wire codec: one Cap'n Proto Envelope (schemas/ferry.capnp) per ZeroMQ frame.
//
// Decoding treats input as hostile: size limits are checked before reading,
// the frame is copied into word-aligned memory (tcp frames are rarely
// aligned), and reading uses traversal and nesting limits. Accessors of the
// returned reader may still throw kj::Exception on a malicious pointer, so
// callers read inside a try/catch (see coordinator/worker_codec.cc).
//
// Thread safety: pure functions; a DecodedEnvelope belongs to one thread.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <memory>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "common/status.h"
#include "ferry.capnp.h"

namespace ferry {

// Frames larger than this are rejected before decoding.
inline constexpr size_t kMaxFrameBytes = 4 << 20;

class DecodedEnvelope {
 public:
  DecodedEnvelope(kj::Array<capnp::word> words, const capnp::ReaderOptions& options);
  Envelope::Reader root() { return root_; }

 private:
  kj::Array<capnp::word> words_;
  capnp::FlatArrayMessageReader reader_;
  Envelope::Reader root_;
};

// kInvalidArgument for empty, oversized, misaligned-length or malformed input.
// Does not check the protocol version (the caller answers a mismatch).
Result<std::unique_ptr<DecodedEnvelope>> DecodeEnvelope(const void* data, size_t size);

zmq::message_t ToFrame(capnp::MessageBuilder& builder);

// Builds an Envelope with the current protocol version and `request_id`.
Envelope::Builder NewEnvelope(capnp::MallocMessageBuilder& builder, uint64_t request_id);

// Fills the shared LeaseRef / Progress structs of a message.
void SetLeaseRef(::LeaseRef::Builder b, uint64_t range, uint64_t epoch, std::string_view worker);
void SetProgress(::Progress::Builder b, std::string_view cursor, uint64_t rows, uint64_t bytes,
                 uint64_t digest, uint64_t rejected = 0);

inline std::string_view AsView(capnp::Data::Reader d) {
  return {reinterpret_cast<const char*>(d.begin()), d.size()};
}
inline std::string_view AsView(capnp::Text::Reader t) { return {t.cStr(), t.size()}; }
inline capnp::Data::Reader AsData(std::string_view s) {
  return {reinterpret_cast<const capnp::byte*>(s.data()), s.size()};
}

}  // namespace ferry
