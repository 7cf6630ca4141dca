// Cuts the bytes a server sends into checked responses. Sans-IO: bytes in, replies out;
// the bytes may come a few at a time or several replies at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "wire.h"

namespace eft {

struct Reply {
    wire::Response code = wire::Response::kServerError;
    wire::Bytes payload;
};

class ResponseParser {
public:
    // Appends received bytes.
    void feed(const std::uint8_t* data, std::size_t size);
    // The next whole reply, if one is buffered. A header is checked (version 3, a known
    // code, a payload of at most wire::kMaxResponsePayload) as soon as its 7 bytes are in,
    // before any payload byte is awaited: a bad one throws ProtocolError.
    std::optional<Reply> next();
    // Bytes received and not yet returned in a reply.
    std::size_t buffered() const noexcept { return buffer_.size() - start_; }

private:
    wire::Bytes buffer_;
    std::size_t start_ = 0;  // where the first unreturned byte is
};

}  // namespace eft
