#include "transfer.h"

#include <system_error>

#include "crypto.h"
#include "errors.h"

namespace eft {
namespace {

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

}  // namespace eft
