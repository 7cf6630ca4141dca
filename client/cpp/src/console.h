// How the client reports progress. Protocol and transfer code talk to a Reporter; only
// the console implementation (used by app.cpp) writes to stdout/stderr: progress and info
// lines on stdout, one-line warnings and errors on stderr.
#pragma once

#include <string>

namespace eft {

class Reporter {
public:
    virtual ~Reporter() = default;
    virtual void info(const std::string& line) = 0;
    virtual void warn(const std::string& line) = 0;
    // The server answered 1607; the spec's exact notice.
    virtual void server_error() = 0;
};

class ConsoleReporter final : public Reporter {
public:
    void info(const std::string& line) override;
    void warn(const std::string& line) override;
    void server_error() override;
    // The final fatal message.
    static void error(const std::string& line);
};

// For tests and callers that want silence.
class NullReporter final : public Reporter {
public:
    void info(const std::string&) override {}
    void warn(const std::string&) override {}
    void server_error() override {}
};

}  // namespace eft
