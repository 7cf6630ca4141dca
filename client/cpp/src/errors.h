// Error types of the client. Each one maps to one process exit code (shared with the
// Python client), so the top level only has to catch eft::Error.
#pragma once

#include <stdexcept>
#include <string>

namespace eft {

enum class ExitCode : int {
    kOk = 0,
    kInternal = 1,     // a bug or an unexpected local failure
    kUsage = 2,        // bad flags, bad or missing transfer.info / me.info, missing file
    kConnection = 3,   // cannot connect, connection lost, time-out
    kRefused = 4,      // registration refused (1601)
    kIntegrity = 5,    // CRC still wrong after the last retry (902 sent)
    kServer = 6,       // 1607 after 3 retries, or a response violating the protocol
    // 7 (the server's key is not the pinned one) and 8 (the server could not store the
    // file) are version 4's: this version-3 client never exits with them.
    kServerIdentity = 7,
    kServerStorage = 8,
    kIdentity = 9,     // the stored identity was kept: another name asked for, or a 1606
    kNoRoom = 10,      // version 4's (no space or over quota on the server): never here
    kFileChanged = 11,  // version 4's (a file changed while it was sent): never here
    kInterrupted = 130,
};

class Error : public std::runtime_error {
public:
    Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    ExitCode code() const noexcept { return code_; }

private:
    ExitCode code_;
};

struct UsageError : Error {
    explicit UsageError(const std::string& m) : Error(ExitCode::kUsage, m) {}
};
struct ConnectionError : Error {
    explicit ConnectionError(const std::string& m) : Error(ExitCode::kConnection, m) {}
};
struct RefusedError : Error {
    explicit RefusedError(const std::string& m) : Error(ExitCode::kRefused, m) {}
};
struct IntegrityError : Error {
    explicit IntegrityError(const std::string& m) : Error(ExitCode::kIntegrity, m) {}
};
// A response that breaks the protocol (bad size, unexpected code, undecryptable key...).
struct ProtocolError : Error {
    explicit ProtocolError(const std::string& m) : Error(ExitCode::kServer, m) {}
};
// The server kept answering 1607.
struct ServerError : Error {
    explicit ServerError(const std::string& m) : Error(ExitCode::kServer, m) {}
};
// The stored identity cannot be used as asked, and is kept (docs/IDENTITY.md): the user
// decides, e.g. with --re-register.
struct IdentityError : Error {
    explicit IdentityError(const std::string& m) : Error(ExitCode::kIdentity, m) {}
};
struct InternalError : Error {
    explicit InternalError(const std::string& m) : Error(ExitCode::kInternal, m) {}
};

}  // namespace eft
