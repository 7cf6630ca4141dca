#include "transfer.h"

#include <algorithm>
#include <optional>
#include <system_error>
#include <vector>

#include "cksum.h"
#include "errors.h"
#include "platform/files.h"

namespace eft {
namespace {

constexpr std::size_t kReadChunk = 256 * 1024;  // one default packet's worth per read

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

}  // namespace

TransferPlan plan_for_size(std::uint64_t orig_size, std::uint32_t requested_packet_size) {
    if (requested_packet_size == 0 || requested_packet_size > kMaxPacketSize) {
        throw UsageError("the packet size must be 1-" + std::to_string(kMaxPacketSize) + " bytes");
    }
    if (orig_size > kMaxFileSize) {
        throw UsageError("the file is " + std::to_string(orig_size) +
                         " bytes; the protocol carries at most " + std::to_string(kMaxFileSize));
    }
    TransferPlan plan;
    plan.orig_size = static_cast<std::uint32_t>(orig_size);
    const std::uint64_t content = crypto::AesCbcEncryptor::ciphertext_size(orig_size);
    plan.content_size = static_cast<std::uint32_t>(content);
    std::uint64_t packet = requested_packet_size;
    if (ceil_div(content, packet) > kMaxPackets) {
        packet = ceil_div(content, kMaxPackets);
        packet = ceil_div(packet, 16) * 16;  // keep slices block-aligned
        plan.packet_size_grown = true;
    }
    plan.packet_size = static_cast<std::uint32_t>(packet);
    plan.total_packets = static_cast<std::uint16_t>(ceil_div(content, packet));
    return plan;
}

TransferPlan plan_transfer(const std::filesystem::path& path, std::uint32_t requested_packet_size) {
    // Checked first, before the file and long before connecting: a name the protocol
    // cannot carry would only be refused by the server, again and again (1607).
    const std::string file_name = path.filename().u8string();
    if (!wire::is_sendable_name(file_name)) {
        throw UsageError("'" + wire::escape_text(file_name) +
                         "': version 3 carries file names of up to 254 printable ASCII characters");
    }
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) {
        throw UsageError("file to send not found: " + path.u8string());
    }
    if (!std::filesystem::is_regular_file(status)) {
        throw UsageError("not a regular file: " + path.u8string());
    }
    const std::uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) throw UsageError("cannot read " + path.u8string() + ": " + ec.message());
    TransferPlan plan;
    try {
        plan = plan_for_size(size, requested_packet_size);
    } catch (const UsageError& e) {
        throw UsageError(path.u8string() + ": " + e.what());
    }
    plan.path = path;
    plan.file_name = file_name;
    return plan;
}

void FileSender::send(const TransferPlan& plan) {
    reporter_.info("sending " + plan.path.u8string() + " as '" + plan.file_name + "': " +
                  std::to_string(plan.orig_size) + " bytes, " + std::to_string(plan.total_packets) +
                  " packet(s) of up to " + std::to_string(plan.packet_size) + " bytes");
    for (int attempt = 1;; ++attempt) {
        const Sent sent = send_until_received(plan, attempt);
        const wire::FileReceived& r = sent.received;
        if (r.id != id_) reporter_.warn("1603 carries client id " + wire::to_hex(r.id) + ", not ours");
        if (r.content_size != plan.content_size) {
            reporter_.warn("1603 reports " + std::to_string(r.content_size) + " encrypted bytes; we sent " +
                          std::to_string(plan.content_size));
        }
        // The name comes from the server: escaped, so it cannot drive the terminal.
        if (r.file_name != plan.file_name) {
            reporter_.warn("1603 names the file '" + wire::escape_text(r.file_name) + "'");
        }

        if (r.cksum == sent.cksum) {
            reporter_.info("CRC ok (" + std::to_string(sent.cksum) + ")");
            confirm(plan, wire::Request::kCrcOk);
            reporter_.info("sent " + plan.file_name);
            return;
        }
        reporter_.warn("CRC mismatch on attempt " + std::to_string(attempt) + " of " +
                      std::to_string(kCrcAttempts) + ": server " + std::to_string(r.cksum) + ", ours " +
                      std::to_string(sent.cksum));
        if (attempt < kCrcAttempts) {
            channel_.send(wire::crc_request(id_, wire::Request::kCrcRetry, plan.file_name), "901 (CRC wrong)");
            ++unanswered_901_;  // no reply is defined; some servers send a 1604 anyway
            continue;
        }
        confirm(plan, wire::Request::kCrcGiveUp);
        throw IntegrityError("the CRC of " + plan.file_name + " was still wrong after " +
                             std::to_string(kCrcAttempts) + " attempts; sent 902 and gave up");
    }
}

FileSender::Sent FileSender::send_until_received(const TransferPlan& plan, int attempt) {
    const std::string what = "the file " + plan.file_name;
    for (int errors = 0;;) {
        Sent sent;
        sent.cksum = send_packets(plan);
        for (;;) {
            const Reply reply = channel_.receive("1603 (file received) for " + plan.file_name);
            if (reply.code == wire::Response::kAck && unanswered_901_ > 0) {
                wire::check_optional_id_payload(reply.code, reply.payload);
                --unanswered_901_;  // a tolerant server's answer to our 901: not for us
                continue;
            }
            if (reply.code == wire::Response::kServerError) {
                wire::check_optional_id_payload(reply.code, reply.payload);
                on_server_error(reporter_, ++errors, what);
                break;  // send the whole file again
            }
            if (reply.code != wire::Response::kFileReceived) {
                unexpected_reply(reply, "after the last packet of " + plan.file_name + " (attempt " +
                                            std::to_string(attempt) + ")");
            }
            sent.received = wire::parse_file_received(reply.payload);
            // A server that answers 901 does so before the 1603; none can follow now.
            unanswered_901_ = 0;
            return sent;
        }
    }
}

std::uint32_t FileSender::send_packets(const TransferPlan& plan) {
    std::optional<platform::InputFile> in;
    try {
        in.emplace(plan.path);
    } catch (const platform::FileError& e) {
        throw UsageError(e.what());
    }

    Cksum crc;
    crypto::AesCbcEncryptor encryptor(key_);
    std::vector<std::uint8_t> chunk(kReadChunk);
    wire::Bytes cipher;  // ciphertext not yet sent: less than one packet plus one chunk
    cipher.reserve(plan.packet_size + kReadChunk + 16);
    wire::Bytes frame;
    wire::PacketHeader header{plan.content_size, plan.orig_size, 0, plan.total_packets, plan.file_name};
    std::uint32_t next = 1;

    const auto flush = [&](bool final) {
        std::size_t offset = 0;
        while (cipher.size() - offset >= plan.packet_size || (final && offset < cipher.size())) {
            const std::size_t n = std::min<std::size_t>(plan.packet_size, cipher.size() - offset);
            if (next > plan.total_packets) throw InternalError("packet count overflow for " + plan.file_name);
            header.packet_number = static_cast<std::uint16_t>(next);
            wire::build_file_packet(frame, id_, header, cipher.data() + offset, n);
            channel_.send(frame, "packet " + std::to_string(next) + " of " + plan.file_name);
            ++next;
            offset += n;
        }
        cipher.erase(cipher.begin(), cipher.begin() + static_cast<std::ptrdiff_t>(offset));
    };

    std::uint64_t remaining = plan.orig_size;
    while (remaining > 0) {
        const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, chunk.size()));
        std::size_t got = 0;
        try {
            got = in->read(chunk.data(), want);
        } catch (const platform::FileError& e) {
            throw UsageError(e.what());  // "cannot read PATH: REASON", as the Python client
        }
        if (got == 0) throw UsageError(plan.path.u8string() + " became shorter while it was being sent");
        crc.update(chunk.data(), got);
        encryptor.update(chunk.data(), got, cipher);
        remaining -= got;
        flush(false);
    }
    encryptor.finish(cipher);
    flush(true);
    if (next - 1 != plan.total_packets) {
        throw InternalError("sent " + std::to_string(next - 1) + " packets for " + plan.file_name +
                            "; planned " + std::to_string(plan.total_packets));
    }
    return crc.value();
}

void FileSender::confirm(const TransferPlan& plan, wire::Request code) {
    const bool ok = code == wire::Request::kCrcOk;
    const std::string what = ok ? "900 (CRC ok)" : "902 (CRC wrong, giving up)";
    const Reply reply = request(channel_, reporter_, wire::crc_request(id_, code, plan.file_name), what);
    if (reply.code != wire::Response::kAck) unexpected_reply(reply, "to " + what);
    wire::check_optional_id_payload(reply.code, reply.payload);
}

}  // namespace eft
