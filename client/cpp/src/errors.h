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
struct InternalError : Error {
    explicit InternalError(const std::string& m) : Error(ExitCode::kInternal, m) {}
};

}  // namespace eft
