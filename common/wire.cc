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

void SetLeaseRef(::LeaseRef::Builder b, uint64_t range, uint64_t epoch, std::string_view worker) {
  b.setRangeId(range);
  b.setEpoch(epoch);
  b.setWorkerId(capnp::Text::Reader(worker.data(), worker.size()));
}

void SetProgress(::Progress::Builder b, std::string_view cursor, uint64_t rows, uint64_t bytes,
                 uint64_t digest, uint64_t rejected) {
  b.setCursor(AsData(cursor));
  b.setRows(rows);
  b.setBytes(bytes);
  b.setDigest(digest);
  b.setRejected(rejected);
}

}  // namespace ferry
