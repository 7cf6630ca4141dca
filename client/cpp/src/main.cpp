#include <csignal>
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
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
    return eft::run_client(args);
}
