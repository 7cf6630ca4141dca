#include "channel.h"

#include <array>
#include <string>

#include "errors.h"

namespace eft {
namespace {

std::string lost(const platform::SocketError& e, std::string_view context) {
    return std::string(e.what()) + " (" + std::string(context) + ")";
}

}  // namespace

void Channel::send(const wire::Bytes& frame, std::string_view what) {
    try {
        stream_.send_all(frame.data(), frame.size());
    } catch (const platform::SocketError& e) {
        throw ConnectionError(lost(e, std::string("while sending ") + std::string(what)));
    }
}

Reply Channel::receive(std::string_view waiting_for) {
    const std::string context = std::string("while waiting for ") + std::string(waiting_for);
    try {
        // One deadline for the whole reply, header and payload.
        const auto deadline = platform::TcpStream::Clock::now() + reply_timeout_;
        std::array<std::uint8_t, wire::kResponseHeaderSize> raw{};
        stream_.receive_exact(raw.data(), raw.size(), deadline);
        const wire::ResponseHeader header = wire::parse_response_header(raw);
        wire::check_response_header(header);
        Reply reply;
        reply.code = static_cast<wire::Response>(header.code);
        reply.payload.resize(header.payload_size);
        if (header.payload_size > 0) stream_.receive_exact(reply.payload.data(), reply.payload.size(), deadline);
        return reply;
    } catch (const platform::SocketError& e) {
        throw ConnectionError(lost(e, context));
    }
}

void on_server_error(Reporter& reporter, int errors_so_far, std::string_view what) {
    reporter.server_error();
    if (errors_so_far > kServerErrorRetries) {
        throw ServerError("the server answered " + std::string(what) + " with 1607 (general server error) " +
                          std::to_string(errors_so_far) + " times in a row; giving up after " +
                          std::to_string(kServerErrorRetries) + " retries");
    }
    reporter.info("retrying " + std::string(what) + " (retry " + std::to_string(errors_so_far) + " of " +
                  std::to_string(kServerErrorRetries) + ")");
}

Reply request(Channel& channel, Reporter& reporter, const wire::Bytes& frame, std::string_view what) {
    for (int errors = 0;;) {
        channel.send(frame, what);
        Reply reply = channel.receive(std::string("the reply to ") + std::string(what));
        if (reply.code != wire::Response::kServerError) return reply;
        wire::check_optional_id_payload(reply.code, reply.payload);
        on_server_error(reporter, ++errors, what);
    }
}

void unexpected_reply(const Reply& reply, std::string_view after) {
    throw ProtocolError("unexpected response " + wire::describe(reply.code) + " " + std::string(after));
}

}  // namespace eft
