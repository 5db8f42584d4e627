#include "common/wire.h"

#include <fmt/format.h>

#include <cstring>

#include "common/version.h"

namespace ferry {

DecodedEnvelope::DecodedEnvelope(kj::Array<capnp::word> words, const capnp::ReaderOptions& options)
    : words_(std::move(words)),
      reader_(words_.asPtr(), options),
      root_(reader_.getRoot<Envelope>()) {}

Result<std::unique_ptr<DecodedEnvelope>> DecodeEnvelope(const void* data, size_t size) {
  if (size == 0) return InvalidArgument("empty frame");
  if (size > kMaxFrameBytes) {
    return InvalidArgument(
        fmt::format("frame of {} bytes exceeds the {} byte limit", size, kMaxFrameBytes));
  }
  if (size % sizeof(capnp::word) != 0) {
    return InvalidArgument(fmt::format("frame of {} bytes is not a whole number of words", size));
  }
  auto words = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
  std::memcpy(words.begin(), data, size);
  capnp::ReaderOptions options;
  options.traversalLimitInWords = size / sizeof(capnp::word) * 4 + 64;
  options.nestingLimit = 8;
  try {
    auto decoded = std::make_unique<DecodedEnvelope>(std::move(words), options);
    (void)decoded->root().getBody().which();  // touch the union tag now
    return decoded;
  } catch (const kj::Exception& e) {
    return InvalidArgument(fmt::format("malformed message: {}", e.getDescription().cStr()));
  }
}

zmq::message_t ToFrame(capnp::MessageBuilder& builder) {
  auto flat = capnp::messageToFlatArray(builder);
  auto bytes = flat.asBytes();
  return zmq::message_t(bytes.begin(), bytes.size());
}

Envelope::Builder NewEnvelope(capnp::MallocMessageBuilder& builder, uint64_t request_id) {
  auto env = builder.initRoot<Envelope>();
  env.setProtocolVersion(kProtocolVersion);
  env.setRequestId(request_id);
  return env;
}

}  // namespace ferry
