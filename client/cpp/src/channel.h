// Framed request/response exchange over one TCP connection: sends whole request frames
// and reads whole, size-checked responses. Socket failures become ConnectionError.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "console.h"
#include "platform/socket.h"
#include "wire.h"

namespace eft {

struct Reply {
    wire::Response code = wire::Response::kServerError;
    wire::Bytes payload;
};

class Channel {
public:
    Channel(platform::TcpStream stream, std::chrono::milliseconds reply_timeout)
        : stream_(std::move(stream)), reply_timeout_(reply_timeout) {}

    // `what` names the request in error messages ("825 (register)").
    void send(const wire::Bytes& frame, std::string_view what);
    // Reads one response. The header is checked (version 3, known code, payload at most
    // wire::kMaxResponsePayload) before any payload byte is read; exactly payload_size
    // bytes are then consumed. Throws ProtocolError or ConnectionError.
    Reply receive(std::string_view waiting_for);

private:
    platform::TcpStream stream_;
    std::chrono::milliseconds reply_timeout_;
};

// Sends `frame` and returns the first reply that is not 1607. On 1607 it prints
// "server responded with an error" and sends the same frame again, up to
// kServerErrorRetries more times, then throws ServerError.
inline constexpr int kServerErrorRetries = 3;
Reply request(Channel& channel, Reporter& reporter, const wire::Bytes& frame, std::string_view what);

// The error to throw for a reply with a code that is not valid at this point.
[[noreturn]] void unexpected_reply(const Reply& reply, std::string_view after);

// Prints the 1607 notice; throws ServerError if `errors_so_far` exceeds the retries.
void on_server_error(Reporter& reporter, int errors_so_far, std::string_view what);

}  // namespace eft
