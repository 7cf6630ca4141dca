#include "app.h"

#include <chrono>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <utility>

#include "cli.h"
#include "client_session.h"
#include "config.h"
#include "console.h"
#include "driver.h"
#include "platform/socket.h"
#include "transfer.h"

namespace eft {
namespace {

constexpr const char* kVersionText = "eft-client-cpp 1.0 (protocol version 3)";

// Everything needed before connecting, resolved from flags, transfer.info and me.info.
struct Job {
    config::Endpoint server;
    std::string name;
    std::vector<TransferPlan> plans;
    std::optional<config::MeInfo> me;
};

Job resolve_job(const CliOptions& options, config::ConfigDir& dir) {
    // transfer.info is needed only for what the flags do not give.
    const bool need_transfer_info = !options.server || (!options.name) || options.files.empty();
    std::optional<config::TransferInfo> info;
    if (need_transfer_info) info = dir.load_transfer_info();
    Job job;

    if (options.server) {
        job.server = config::parse_endpoint(*options.server);
    } else if (info) {
        job.server = info->server;
    } else {
        throw UsageError("no server: pass --server HOST:PORT or create " +
                         (dir.path() / config::kTransferInfo).u8string());
    }
    // Without --dir the identity is the working directory's me.info if there is one,
    // else this server's in the per-user directory (docs/IDENTITY.md).
    if (!options.dir) dir.use_identity_dir(config::locate_identity_dir(dir.path(), job.server));
    job.me = dir.load_me_info();

    if (options.name) {
        job.name = *options.name;
        config::validate_user_name(job.name, "--name");
    } else if (info) {
        job.name = info->name;
    } else if (job.me) {
        job.name = job.me->name;
    } else {
        throw UsageError("no user name: pass --name NAME or create " +
                         (dir.path() / config::kTransferInfo).u8string());
    }

    std::vector<std::filesystem::path> files;
    for (const auto& f : options.files) files.push_back(std::filesystem::u8path(f));
    if (files.empty()) {
        if (!info || !info->file) {
            throw UsageError("no file to send: pass FILE arguments or put a path on line 3 of " +
                             (dir.path() / config::kTransferInfo).u8string());
        }
        files.push_back(info->file->is_absolute() ? *info->file : dir.path() / *info->file);
    }
    const std::uint32_t packet_size = options.packet_size.value_or(kDefaultPacketSize);
    for (const auto& f : files) job.plans.push_back(plan_transfer(f, packet_size));
    return job;
}

int run(const std::vector<std::string>& args) {
    ConsoleReporter reporter;
    const CliOptions options = parse_cli(args);
    if (options.help) {
        std::cout << usage_text();
        return 0;
    }
    if (options.version) {
        std::cout << kVersionText << "\n";
        return 0;
    }
    config::ConfigDir dir(std::filesystem::u8path(options.dir.value_or(".")));
    Job job = resolve_job(options, dir);
    if (job.me && job.me->name != job.name) {
        // Never a silent switch to me.info's name, nor a silent new registration.
        const std::string me_info = (dir.identity_path() / config::kMeInfo).u8string();
        if (!options.re_register) {
            throw IdentityError(me_info + " is the identity of '" + job.me->name + "', but the name asked for is '" +
                                job.name + "'; use --name '" + job.me->name + "', or --re-register to register '" +
                                job.name + "' instead (the old files are kept as *.replaced-TIME)");
        }
        reporter.info(me_info + " is '" + job.me->name + "''s identity: registering '" + job.name +
                      "' instead (--re-register)");
        job.me.reset();
    }
    for (const auto& plan : job.plans) {
        if (plan.packet_size_grown) {
            reporter.info(plan.file_name + ": packet size raised to " + std::to_string(plan.packet_size) +
                          " bytes to stay within 65535 packets");
        }
    }

    const platform::NetworkRuntime network;
    reporter.info("connecting to " + job.server.to_string());
    const auto timeout = std::chrono::milliseconds(std::chrono::seconds(options.timeout_seconds));
    platform::TcpStream stream = [&] {
        try {
            return platform::TcpStream::connect(job.server.host, job.server.port, timeout);
        } catch (const platform::SocketError& e) {
            throw ConnectionError(e.what());
        }
    }();
    ClientSession session(job.name, std::move(job.me), reporter, &crypto::RsaPrivateKey::generate,
                          options.re_register);
    run_session(stream, timeout, session, dir, job.plans, reporter);
    return 0;
}

}  // namespace

int run_client(const std::vector<std::string>& args) {
    try {
        return run(args);
    } catch (const Error& e) {
        ConsoleReporter::error(e.what());
        return static_cast<int>(e.code());
    } catch (const platform::SocketError& e) {
        ConsoleReporter::error(e.what());
        return static_cast<int>(ExitCode::kConnection);
    } catch (const std::bad_alloc&) {
        ConsoleReporter::error("out of memory");
        return static_cast<int>(ExitCode::kInternal);
    } catch (const std::exception& e) {
        ConsoleReporter::error(std::string("internal error: ") + e.what());
        return static_cast<int>(ExitCode::kInternal);
    } catch (...) {
        ConsoleReporter::error("internal error: unknown exception");
        return static_cast<int>(ExitCode::kInternal);
    }
}

}  // namespace eft
