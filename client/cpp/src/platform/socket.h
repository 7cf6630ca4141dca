// The only place of the client that talks to the operating system's network API.
// socket.cpp holds a POSIX implementation and a Winsock implementation, selected with
// #ifdef _WIN32; nothing outside this unit includes a system networking header.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace eft::platform {

class SocketError : public std::runtime_error {
public:
    enum class Kind { kResolve, kConnect, kClosed, kTimeout, kIo };
    SocketError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    Kind kind() const noexcept { return kind_; }

private:
    Kind kind_;
};

// Process-wide set-up for the lifetime of main(): WSAStartup/WSACleanup on Windows;
// on POSIX, a write to a closed peer must give an error, not SIGPIPE.
class NetworkRuntime {
public:
    NetworkRuntime();
    ~NetworkRuntime();
    NetworkRuntime(const NetworkRuntime&) = delete;
    NetworkRuntime& operator=(const NetworkRuntime&) = delete;
};

// A connected, blocking TCP stream: sends time out after the connect time-out, receives
// at a deadline. Move-only; the socket is closed by the destructor.
class TcpStream {
public:
    static TcpStream connect(const std::string& host, std::uint16_t port,
                             std::chrono::milliseconds io_timeout);

    TcpStream(TcpStream&& other) noexcept;
    TcpStream& operator=(TcpStream&& other) noexcept;
    TcpStream(const TcpStream&) = delete;
    TcpStream& operator=(const TcpStream&) = delete;
    ~TcpStream();

    using Clock = std::chrono::steady_clock;
    using Deadline = Clock::time_point;

    // Sends every byte or throws SocketError (each send is bounded by the time-out).
    void send_all(const std::uint8_t* data, std::size_t size);
    // Receives 1 to `size` bytes, or throws SocketError: kTimeout once `deadline` has
    // passed, kClosed when the peer closed the connection. A caller waiting for a reply
    // passes the same deadline to every call, so the time-out bounds the whole reply, not
    // each read (a server sending one byte a minute cannot hold the client for hours).
    std::size_t receive_some(std::uint8_t* data, std::size_t size, Deadline deadline);
    // Receives exactly `size` bytes by `deadline`, or throws SocketError.
    void receive_exact(std::uint8_t* data, std::size_t size, Deadline deadline);

private:
    explicit TcpStream(std::intptr_t handle) noexcept : handle_(handle) {}
    void close() noexcept;

    static constexpr std::intptr_t kInvalid = -1;
    std::intptr_t handle_ = kInvalid;
};

namespace detail {
// Applies a stream's socket options (send time-out, TCP_NODELAY, no SIGPIPE where the
// system has SO_NOSIGPIPE). Throws SocketError when the system refuses one: a time-out
// that silently did not apply would let a send block forever. For TcpStream and tests.
void configure_socket(std::intptr_t handle, std::chrono::milliseconds send_timeout);
}  // namespace detail

}  // namespace eft::platform
