// The platform socket layer's checks that need no network.
#include "harness.h"
#include "platform/socket.h"

#ifndef _WIN32
#include <unistd.h>

TEST_CASE("socket", "a socket option the system refuses is an error, not ignored") {
    int fds[2] = {-1, -1};
    CHECK(::pipe(fds) == 0);
    // A pipe is not a socket: every setsockopt fails with ENOTSOCK.
    CHECK_THROWS(eft::platform::SocketError,
                 eft::platform::detail::configure_socket(fds[0], std::chrono::milliseconds(1000)));
    ::close(fds[0]);
    ::close(fds[1]);
}
#endif
