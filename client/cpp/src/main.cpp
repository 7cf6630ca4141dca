#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "app.h"

#ifdef _WIN32
#include <filesystem>
#include <system_error>

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#endif

namespace {

void on_interrupt(int /*signal*/) {
    // me.info and priv.key are replaced by rename, so stopping here leaves no half file.
    std::_Exit(static_cast<int>(eft::ExitCode::kInterrupted));
}

void handle_interrupts() {
    // Without the handlers Ctrl-C would still stop the client, only with another status.
    if (std::signal(SIGINT, on_interrupt) == SIG_ERR || std::signal(SIGTERM, on_interrupt) == SIG_ERR) {
        (void)std::fputs("eft-client-cpp: warning: cannot handle SIGINT/SIGTERM\n", stderr);
    }
}

#ifdef _WIN32
// The console shows the client's UTF-8 text (paths in messages) as UTF-8 while it runs,
// and gets its own code page back afterwards. Without a console (a pipe) nothing changes.
class Utf8Console {
public:
    Utf8Console() : saved_(::GetConsoleOutputCP()) {
        if (saved_ != 0) (void)::SetConsoleOutputCP(CP_UTF8);
    }
    ~Utf8Console() {
        if (saved_ != 0) (void)::SetConsoleOutputCP(saved_);
    }
    Utf8Console(const Utf8Console&) = delete;
    Utf8Console& operator=(const Utf8Console&) = delete;

private:
    UINT saved_;
};
#endif

}  // namespace

#ifdef _WIN32
// wmain: main's argv would arrive in the ANSI code page: in code page 1252 "données" is
// not UTF-8 (u8path throws: exit 1) and "данные" becomes "??????" (no such file). The
// UTF-16 arguments become UTF-8, the encoding the rest of the client uses for paths
// (std::filesystem::u8path).
int wmain(int argc, wchar_t** argv) {
    handle_interrupts();
    const Utf8Console console;
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) {
        try {
            args.push_back(std::filesystem::path(argv[i]).u8string());
        } catch (const std::system_error&) {  // a lone UTF-16 surrogate: no UTF-8 form
            (void)std::fprintf(stderr, "eft-client-cpp: error: argument %d is not valid Unicode\n", i);
            return static_cast<int>(eft::ExitCode::kUsage);
        }
    }
    return eft::run_client(args);
}
#else
int main(int argc, char** argv) {
    handle_interrupts();
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
    return eft::run_client(args);
}
#endif
