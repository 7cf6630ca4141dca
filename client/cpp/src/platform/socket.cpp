#include "platform/socket.h"

#include <climits>
#include <memory>
#include <system_error>
#include <utility>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <cerrno>
#include <csignal>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>
#endif

namespace eft::platform {
namespace {

#ifdef _WIN32
using Native = SOCKET;
constexpr int kMaxChunk = INT_MAX;

Native native(std::intptr_t handle) { return static_cast<Native>(handle); }
int last_error() { return WSAGetLastError(); }
std::string describe(int code) { return std::system_category().message(code); }
bool is_timeout(int code) { return code == WSAETIMEDOUT || code == WSAEWOULDBLOCK; }
bool is_interrupt(int code) { return code == WSAEINTR; }
void close_native(Native s) { ::closesocket(s); }
std::intptr_t to_handle(Native s) {
    return s == INVALID_SOCKET ? std::intptr_t{-1} : static_cast<std::intptr_t>(s);
}

void set_option(Native s, int level, int name, const void* value, std::size_t size, const char* what) {
    if (::setsockopt(s, level, name, static_cast<const char*>(value), static_cast<int>(size)) != 0) {
        throw SocketError(SocketError::Kind::kIo,
                          std::string("cannot set ") + what + ": " + describe(last_error()));
    }
}

void set_options(Native s, std::chrono::milliseconds send_timeout) {
    DWORD ms = static_cast<DWORD>(send_timeout.count());
    set_option(s, SOL_SOCKET, SO_SNDTIMEO, &ms, sizeof ms, "SO_SNDTIMEO");
    BOOL nodelay = TRUE;
    set_option(s, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay, "TCP_NODELAY");
}

// Waits until the socket is readable or `ms` milliseconds have passed: >0 ready, 0 time-out.
int wait_readable(Native s, int ms) {
    WSAPOLLFD entry{};
    entry.fd = s;
    entry.events = POLLRDNORM;
    return ::WSAPoll(&entry, 1, ms);
}

int send_some(Native s, const std::uint8_t* data, std::size_t size) {
    const int n = size > static_cast<std::size_t>(kMaxChunk) ? kMaxChunk : static_cast<int>(size);
    return ::send(s, reinterpret_cast<const char*>(data), n, 0);
}

int receive_native(Native s, std::uint8_t* data, std::size_t size) {
    const int n = size > static_cast<std::size_t>(kMaxChunk) ? kMaxChunk : static_cast<int>(size);
    return ::recv(s, reinterpret_cast<char*>(data), n, 0);
}

void set_blocking(Native s, bool blocking) {
    u_long nonblocking = blocking ? 0 : 1;
    if (::ioctlsocket(s, static_cast<long>(FIONBIO), &nonblocking) != 0) {
        throw SocketError(SocketError::Kind::kIo, "cannot switch the socket's blocking mode: " + describe(last_error()));
    }
}

// SO_SNDTIMEO does not bound connect() on Windows (it waits for the system's own SYN
// retries, about 21 s, whatever the time-out): the connection is started non-blocking and
// waited for with select() for at most `timeout`, then the socket is blocking again.
// Returns an empty string once connected, else why not.
std::string connect_within(Native s, const sockaddr* address, int size, std::chrono::milliseconds timeout) {
    set_blocking(s, false);
    if (::connect(s, address, size) != 0) {
        const int code = last_error();
        if (code != WSAEWOULDBLOCK) return describe(code);
        fd_set writable;
        fd_set failed;
        FD_ZERO(&writable);
        FD_ZERO(&failed);
        FD_SET(s, &writable);  // connected
        FD_SET(s, &failed);    // refused or unreachable (Windows reports a failed connect here)
        timeval limit{};
        limit.tv_sec = static_cast<long>(timeout.count() / 1000);
        limit.tv_usec = static_cast<long>((timeout.count() % 1000) * 1000);
        const int ready = ::select(0, nullptr, &writable, &failed, &limit);
        if (ready == 0) return "timed out after " + std::to_string(timeout.count()) + " ms";
        if (ready < 0) return describe(last_error());
        int error = 0;
        int error_size = static_cast<int>(sizeof error);
        if (::getsockopt(s, SOL_SOCKET, SO_ERROR, reinterpret_cast<char*>(&error), &error_size) != 0) {
            return describe(last_error());
        }
        if (error != 0) return describe(error);
        if (FD_ISSET(s, &failed)) return "connection failed";
    }
    set_blocking(s, true);
    return {};
}
#else
using Native = int;

Native native(std::intptr_t handle) { return static_cast<Native>(handle); }
int last_error() { return errno; }
std::string describe(int code) { return std::generic_category().message(code); }
bool is_timeout(int code) { return code == EAGAIN || code == EWOULDBLOCK || code == ETIMEDOUT; }
bool is_interrupt(int code) { return code == EINTR; }
void close_native(Native s) { ::close(s); }
std::intptr_t to_handle(Native s) { return static_cast<std::intptr_t>(s); }

void set_option(Native s, int level, int name, const void* value, socklen_t size, const char* what) {
    if (::setsockopt(s, level, name, value, size) != 0) {
        throw SocketError(SocketError::Kind::kIo,
                          std::string("cannot set ") + what + ": " + describe(last_error()));
    }
}

void set_options(Native s, std::chrono::milliseconds send_timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(send_timeout.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((send_timeout.count() % 1000) * 1000);
    set_option(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv, "SO_SNDTIMEO");
    int nodelay = 1;
    set_option(s, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay, "TCP_NODELAY");
#ifdef SO_NOSIGPIPE
    int nosigpipe = 1;
    set_option(s, SOL_SOCKET, SO_NOSIGPIPE, &nosigpipe, sizeof nosigpipe, "SO_NOSIGPIPE");
#endif
}

// Waits until the socket is readable or `ms` milliseconds have passed: >0 ready, 0 time-out.
int wait_readable(Native s, int ms) {
    pollfd entry{};
    entry.fd = s;
    entry.events = POLLIN;
    return ::poll(&entry, 1, ms);
}

long send_some(Native s, const std::uint8_t* data, std::size_t size) {
#ifdef MSG_NOSIGNAL
    constexpr int kFlags = MSG_NOSIGNAL;
#else
    constexpr int kFlags = 0;
#endif
    return static_cast<long>(::send(s, data, size, kFlags));
}

long receive_native(Native s, std::uint8_t* data, std::size_t size) {
    return static_cast<long>(::recv(s, data, size, 0));
}

// Linux bounds connect() with SO_SNDTIMEO (set by set_options before): it fails with
// EINPROGRESS once the time-out has passed. Returns an empty string once connected.
std::string connect_within(Native s, const sockaddr* address, socklen_t size, std::chrono::milliseconds timeout) {
    if (::connect(s, address, size) == 0) return {};
    const int code = last_error();
    if (code == EINPROGRESS) return "timed out after " + std::to_string(timeout.count()) + " ms";
    return describe(code);
}
#endif

struct AddrInfoDeleter {
    void operator()(addrinfo* list) const noexcept { ::freeaddrinfo(list); }
};

std::string endpoint_text(const std::string& host, std::uint16_t port) {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

}  // namespace

NetworkRuntime::NetworkRuntime() {
#ifdef _WIN32
    WSADATA data{};
    const int rc = ::WSAStartup(MAKEWORD(2, 2), &data);
    if (rc != 0) throw SocketError(SocketError::Kind::kIo, "WSAStartup failed: " + describe(rc));
#else
    if (std::signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        throw SocketError(SocketError::Kind::kIo, "cannot ignore SIGPIPE");
    }
#endif
}

NetworkRuntime::~NetworkRuntime() {
#ifdef _WIN32
    ::WSACleanup();
#endif
}

TcpStream TcpStream::connect(const std::string& host, std::uint16_t port,
                             std::chrono::milliseconds io_timeout) {
    if (io_timeout.count() <= 0) throw SocketError(SocketError::Kind::kIo, "the time-out must be positive");
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    addrinfo* raw = nullptr;
    const std::string service = std::to_string(port);
    const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &raw);
    if (rc != 0 || raw == nullptr) {
#ifdef _WIN32
        const std::string reason = describe(rc);
#else
        const std::string reason = ::gai_strerror(rc);
#endif
        throw SocketError(SocketError::Kind::kResolve,
                          "cannot resolve " + endpoint_text(host, port) + ": " + reason);
    }
    const std::unique_ptr<addrinfo, AddrInfoDeleter> list(raw);

    std::string reason = "no usable address";
    for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
        const Native s = ::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        TcpStream stream(to_handle(s));
        if (stream.handle_ == kInvalid) {
            reason = describe(last_error());
            continue;
        }
        set_options(s, io_timeout);
        reason = connect_within(s, ai->ai_addr, static_cast<socklen_t>(ai->ai_addrlen), io_timeout);
        if (reason.empty()) return stream;
    }
    throw SocketError(SocketError::Kind::kConnect,
                      "cannot connect to " + endpoint_text(host, port) + ": " + reason);
}

TcpStream::TcpStream(TcpStream&& other) noexcept : handle_(std::exchange(other.handle_, kInvalid)) {}

TcpStream& TcpStream::operator=(TcpStream&& other) noexcept {
    if (this != &other) {
        close();
        handle_ = std::exchange(other.handle_, kInvalid);
    }
    return *this;
}

TcpStream::~TcpStream() { close(); }

void TcpStream::close() noexcept {
    if (handle_ != kInvalid) {
        close_native(native(handle_));
        handle_ = kInvalid;
    }
}

void TcpStream::send_all(const std::uint8_t* data, std::size_t size) {
    while (size > 0) {
        const auto n = send_some(native(handle_), data, size);
        if (n < 0) {
            const int code = last_error();
            if (is_interrupt(code)) continue;
            if (is_timeout(code)) {
                throw SocketError(SocketError::Kind::kTimeout, "timed out sending to the server");
            }
            throw SocketError(SocketError::Kind::kIo, "send failed: " + describe(code));
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

std::size_t TcpStream::receive_some(std::uint8_t* data, std::size_t size, Deadline deadline) {
    for (;;) {
        // The time left until the deadline, rounded up to a whole millisecond.
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) throw SocketError(SocketError::Kind::kTimeout, "timed out waiting for the server");
        const int ms = left > INT_MAX ? INT_MAX : static_cast<int>(left);
        const int ready = wait_readable(native(handle_), ms);
        if (ready < 0) {
            const int code = last_error();
            if (is_interrupt(code)) continue;
            throw SocketError(SocketError::Kind::kIo, "receive failed: " + describe(code));
        }
        if (ready == 0) continue;  // the deadline is checked at the top
        const auto n = receive_native(native(handle_), data, size);
        if (n == 0) throw SocketError(SocketError::Kind::kClosed, "the server closed the connection");
        if (n < 0) {
            const int code = last_error();
            if (is_interrupt(code) || is_timeout(code)) continue;
            throw SocketError(SocketError::Kind::kIo, "receive failed: " + describe(code));
        }
        return static_cast<std::size_t>(n);
    }
}

void TcpStream::receive_exact(std::uint8_t* data, std::size_t size, Deadline deadline) {
    while (size > 0) {
        const std::size_t n = receive_some(data, size, deadline);
        data += n;
        size -= n;
    }
}

namespace detail {
void configure_socket(std::intptr_t handle, std::chrono::milliseconds send_timeout) {
    set_options(native(handle), send_timeout);
}
}  // namespace detail

}  // namespace eft::platform
