#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "app.h"

namespace {

void on_interrupt(int /*signal*/) {
    // me.info and priv.key are replaced by rename, so stopping here leaves no half file.
    std::_Exit(static_cast<int>(eft::ExitCode::kInterrupted));
}

}  // namespace

int main(int argc, char** argv) {
    // Without the handlers Ctrl-C would still stop the client, only with another status.
    if (std::signal(SIGINT, on_interrupt) == SIG_ERR || std::signal(SIGTERM, on_interrupt) == SIG_ERR) {
        (void)std::fputs("eft-client-cpp: warning: cannot handle SIGINT/SIGTERM\n", stderr);
    }
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
    return eft::run_client(args);
}
