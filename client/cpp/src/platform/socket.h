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

// A connected, blocking TCP stream with send and receive time-outs. Move-only; the
// socket is closed by the destructor.
class TcpStream {
public:
    static TcpStream connect(const std::string& host, std::uint16_t port,
                             std::chrono::milliseconds io_timeout);

    TcpStream(TcpStream&& other) noexcept;
    TcpStream& operator=(TcpStream&& other) noexcept;
    TcpStream(const TcpStream&) = delete;
    TcpStream& operator=(const TcpStream&) = delete;
    ~TcpStream();

    // Sends every byte or throws SocketError.
    void send_all(const std::uint8_t* data, std::size_t size);
    // Receives exactly `size` bytes (looping over short reads) or throws SocketError
    // (kClosed when the peer closed the connection first).
    void receive_exact(std::uint8_t* data, std::size_t size);

private:
    explicit TcpStream(std::intptr_t handle) noexcept : handle_(handle) {}
    void close() noexcept;

    static constexpr std::intptr_t kInvalid = -1;
    std::intptr_t handle_ = kInvalid;
};

}  // namespace eft::platform
