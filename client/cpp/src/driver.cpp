#include "driver.h"

#include <array>
#include <optional>
#include <string>

#include "errors.h"
#include "platform/files.h"

namespace eft {
namespace {

constexpr std::size_t kReadPiece = std::size_t{256} * 1024;  // one default packet's worth per read

class Driver {
public:
    Driver(platform::TcpStream& stream, std::chrono::milliseconds reply_timeout, ClientSession& session,
           const config::ConfigDir& dir, Reporter& reporter)
        : stream_(stream), reply_timeout_(reply_timeout), session_(session), dir_(dir), reporter_(reporter) {}

    void run(const std::vector<TransferPlan>& plans) {
        perform(session_.start());
        while (!session_.ready()) perform(await());
        for (const TransferPlan& plan : plans) send_file(plan);
        reporter_.info("done: " + std::to_string(plans.size()) + " file(s) sent");
    }

private:
    void send_file(const TransferPlan& plan) {
        for (;;) {
            stream_file(plan);
            for (;;) {
                Step step = await();
                const bool again = step.send_file;
                const bool done = step.file_done;
                perform(std::move(step));
                if (done) return;
                if (again) break;
            }
        }
    }

    // One attempt: the file read once, encrypted and sent packet by packet.
    void stream_file(const TransferPlan& plan) {
        session_.begin_file(plan);
        const FrameSink sink = [&](const wire::Bytes& frame, std::uint16_t number) {
            send(frame, "packet " + std::to_string(number) + " of " + plan.file_name);
        };
        std::optional<platform::InputFile> in;
        try {
            in.emplace(plan.path);
        } catch (const platform::FileError& e) {
            throw UsageError(e.what());
        }
        std::vector<std::uint8_t> piece(kReadPiece);
        std::uint64_t remaining = plan.orig_size;
        while (remaining > 0) {
            const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, piece.size()));
            std::size_t got = 0;
            try {
                got = in->read(piece.data(), want);
            } catch (const platform::FileError& e) {
                throw UsageError(e.what());  // "cannot read PATH: REASON", as the Python client
            }
            if (got == 0) throw UsageError(plan.path.u8string() + " became shorter while it was being sent");
            session_.file_data(piece.data(), got, sink);
            remaining -= got;
        }
        session_.end_file(sink);
    }

    void perform(Step step) {
        if (step.save_identity) {
            // Before the 826 that binds the key is sent (docs/IDENTITY.md).
            for (const auto& kept : dir_.save_identity(*step.save_identity)) {
                reporter_.info("kept the previous identity as " + kept.u8string());
            }
            reporter_.info("wrote me.info and priv.key in " + dir_.identity_path().u8string());
        }
        for (const Outgoing& out : step.send) send(out.frame, out.what);
    }

    void send(const wire::Bytes& frame, const std::string& what) {
        try {
            stream_.send_all(frame.data(), frame.size());
        } catch (const platform::SocketError& e) {
            throw ConnectionError(std::string(e.what()) + " (while sending " + what + ")");
        }
    }

    // The session's next step, after as many bytes as one reply needs; one deadline for it.
    Step await() {
        const auto deadline = platform::TcpStream::Clock::now() + reply_timeout_;
        for (;;) {
            if (auto step = session_.next()) return std::move(*step);
            std::size_t n = 0;
            try {
                n = stream_.receive_some(buffer_.data(), buffer_.size(), deadline);
            } catch (const platform::SocketError& e) {
                throw ConnectionError(std::string(e.what()) + " (while waiting for " + session_.waiting_for() + ")");
            }
            session_.feed(buffer_.data(), n);
        }
    }

    platform::TcpStream& stream_;
    std::chrono::milliseconds reply_timeout_;
    ClientSession& session_;
    const config::ConfigDir& dir_;
    Reporter& reporter_;
    std::array<std::uint8_t, 4096> buffer_{};
};

}  // namespace

void run_session(platform::TcpStream& stream, std::chrono::milliseconds reply_timeout, ClientSession& session,
                 const config::ConfigDir& dir, const std::vector<TransferPlan>& plans, Reporter& reporter) {
    Driver(stream, reply_timeout, session, dir, reporter).run(plans);
}

}  // namespace eft
