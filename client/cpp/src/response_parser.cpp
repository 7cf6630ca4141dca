#include "response_parser.h"

#include <algorithm>
#include <array>

namespace eft {

void ResponseParser::feed(const std::uint8_t* data, std::size_t size) {
    if (start_ > 0 && start_ == buffer_.size()) {
        buffer_.clear();
        start_ = 0;
    }
    buffer_.insert(buffer_.end(), data, data + size);
}

std::optional<Reply> ResponseParser::next() {
    if (buffered() < wire::kResponseHeaderSize) return std::nullopt;
    std::array<std::uint8_t, wire::kResponseHeaderSize> raw{};
    std::copy_n(buffer_.begin() + static_cast<std::ptrdiff_t>(start_), raw.size(), raw.begin());
    const wire::ResponseHeader header = wire::parse_response_header(raw);
    wire::check_response_header(header);
    const std::size_t whole = wire::kResponseHeaderSize + header.payload_size;
    if (buffered() < whole) return std::nullopt;
    Reply reply;
    reply.code = static_cast<wire::Response>(header.code);
    const auto payload = buffer_.begin() + static_cast<std::ptrdiff_t>(start_ + wire::kResponseHeaderSize);
    reply.payload.assign(payload, payload + header.payload_size);
    start_ += whole;
    // Drop what was returned once it outweighs what is left (replies are small).
    if (start_ >= 4096 && start_ * 2 >= buffer_.size()) {
        buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(start_));
        start_ = 0;
    }
    return reply;
}

}  // namespace eft
