#include "cli.h"

#include "errors.h"

namespace eft {
namespace {

std::uint32_t parse_number(const std::string& flag, const std::string& value, std::uint32_t min,
                           std::uint32_t max) {
    if (value.empty() || value.size() > 10) throw UsageError(flag + " needs a number, not '" + value + "'");
    std::uint64_t n = 0;
    for (const char c : value) {
        if (c < '0' || c > '9') throw UsageError(flag + " needs a number, not '" + value + "'");
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (n < min || n > max) {
        throw UsageError(flag + " must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    return static_cast<std::uint32_t>(n);
}

}  // namespace

std::string usage_text() {
    return "usage: eft-client-cpp [FILE...] [--server HOST:PORT] [--name NAME] [--dir DIR]\n"
           "                      [--packet-size BYTES] [--timeout SECONDS] [--re-register]\n"
           "\n"
           "Sends files to an eft server with protocol version 3.\n"
           "  FILE...              files to send (default: line 3 of transfer.info)\n"
           "  --server HOST:PORT   server address (default: line 1 of transfer.info)\n"
           "  --name NAME          user name to register (default: line 2 of transfer.info)\n"
           "  --dir DIR            one directory for transfer.info, me.info, priv.key. Default:\n"
           "                       the working directory if it holds transfer.info or me.info,\n"
           "                       else the identity in $XDG_CONFIG_HOME/eft/servers/HOST_PORT\n"
           "  --packet-size BYTES  ciphertext bytes per 828 packet (default 262144)\n"
           "  --timeout SECONDS    network time-out (default 60)\n"
           "  --re-register        register anew although me.info exists (another name, or the\n"
           "                       server denied it); the old files are kept as *.replaced-TIME\n"
           "Exit codes: 0 ok, 1 internal, 2 usage/config, 3 connection, 4 registration refused,\n"
           "            5 integrity failed, 6 server error, 9 identity kept (another name, or\n"
           "            1606), 130 interrupted. 7 and 8 are version 4's (see README.md).\n";
}

CliOptions parse_cli(const std::vector<std::string>& args) {
    CliOptions o;
    bool only_files = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (only_files || arg.empty() || arg[0] != '-' || arg == "-") {
            o.files.push_back(arg);
            continue;
        }
        if (arg == "--") {
            only_files = true;
            continue;
        }
        if (arg == "-h" || arg == "--help") {
            o.help = true;
            continue;
        }
        if (arg == "--version") {
            o.version = true;
            continue;
        }
        if (arg == "--re-register") {
            o.re_register = true;
            continue;
        }
        std::string flag = arg;
        std::optional<std::string> value;
        if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            flag = arg.substr(0, eq);
            value = arg.substr(eq + 1);
        }
        const bool known = flag == "--server" || flag == "--name" || flag == "--dir" ||
                           flag == "--packet-size" || flag == "--timeout";
        if (!known) throw UsageError("unknown option '" + flag + "' (see --help)");
        if (!value) {
            if (i + 1 >= args.size()) throw UsageError(flag + " needs a value");
            value = args[++i];
        }
        if (flag == "--server") {
            o.server = *value;
        } else if (flag == "--name") {
            o.name = *value;
        } else if (flag == "--dir") {
            if (value->empty()) throw UsageError("--dir needs a directory");
            o.dir = *value;
        } else if (flag == "--packet-size") {
            o.packet_size = parse_number(flag, *value, 1, 16u << 20);
        } else {
            o.timeout_seconds = parse_number(flag, *value, 1, 86400);
        }
    }
    return o;
}

}  // namespace eft
