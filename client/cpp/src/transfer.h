// Planning a file's transfer (spec sections 2 and 6): how it is cut into 828 packets,
// checked before connecting. Sending it is client_session.h (decisions) and driver.h (I/O).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "wire.h"

namespace eft {

// As the Python client: a server pays a fixed cost per packet, and 256 KiB packets cost
// ours ~0.4 CPU-s/GiB less than 64 KiB ones (docs/PERFORMANCE.md).
inline constexpr std::uint32_t kDefaultPacketSize = 256u << 10;
inline constexpr std::uint32_t kMaxPacketSize = 16u << 20;  // 16 MiB of ciphertext per 828
inline constexpr std::uint32_t kMaxPackets = 65535;
inline constexpr int kCrcAttempts = 4;
// Largest plaintext whose ciphertext size still fits the u32 content_size field.
inline constexpr std::uint64_t kMaxFileSize = 0xFFFFFFFFull - 16;

// How a file is cut into packets; computed (and validated) before connecting.
struct TransferPlan {
    std::filesystem::path path;
    std::string file_name;          // base name, as sent
    std::uint32_t orig_size = 0;
    std::uint32_t content_size = 0;  // 16 * (orig_size / 16 + 1)
    std::uint32_t packet_size = 0;   // ciphertext bytes per packet (the last may be shorter)
    std::uint16_t total_packets = 0;
    bool packet_size_grown = false;  // raised to stay within 65535 packets
};

// Pure: the packet layout for a file of `orig_size` bytes. Throws UsageError if the file
// is too large for the protocol.
TransferPlan plan_for_size(std::uint64_t orig_size, std::uint32_t requested_packet_size);
// Checks the file (exists, regular, name fits the field) and plans it. Throws UsageError.
TransferPlan plan_transfer(const std::filesystem::path& path, std::uint32_t requested_packet_size);

}  // namespace eft
