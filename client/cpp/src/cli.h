// Command line: eft-client-cpp [FILE...] [--server HOST:PORT] [--name NAME] [--dir DIR]
//                              [--packet-size BYTES] [--timeout SECONDS] [--re-register]
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace eft {

struct CliOptions {
    std::vector<std::string> files;
    std::optional<std::string> server;
    std::optional<std::string> name;
    std::optional<std::string> dir;
    std::optional<std::uint32_t> packet_size;
    std::uint32_t timeout_seconds = 60;
    bool re_register = false;  // replace the stored identity (kept aside), docs/IDENTITY.md
    bool help = false;
    bool version = false;
};

// Throws UsageError on a bad flag or value.
CliOptions parse_cli(const std::vector<std::string>& args);
std::string usage_text();

}  // namespace eft
