// The version-3 wire format (spec sections 1-3): request frames the client sends and the
// checked decoding of the responses it receives. Pure functions over byte buffers; no I/O.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace eft::wire {

using Bytes = std::vector<std::uint8_t>;
using ClientId = std::array<std::uint8_t, 16>;

inline constexpr std::uint8_t kVersion = 3;
inline constexpr std::size_t kClientIdSize = 16;
inline constexpr std::size_t kNameFieldSize = 255;
inline constexpr std::size_t kMaxNameLength = kNameFieldSize - 1;  // NUL-terminated
inline constexpr std::size_t kPublicKeySize = 160;
inline constexpr std::size_t kEncryptedKeySize = 128;
inline constexpr std::size_t kRequestHeaderSize = 23;
inline constexpr std::size_t kResponseHeaderSize = 7;
inline constexpr std::size_t kPacketFieldsSize = 4 + 4 + 2 + 2 + kNameFieldSize;  // 267
// No valid response is larger than 279 bytes (1603); anything above this is refused
// before a single payload byte is read.
inline constexpr std::uint32_t kMaxResponsePayload = 4096;

enum class Request : std::uint16_t {
    kRegister = 825,
    kPublicKey = 826,
    kReconnect = 827,
    kFilePacket = 828,
    kCrcOk = 900,
    kCrcRetry = 901,
    kCrcGiveUp = 902,
};

enum class Response : std::uint16_t {
    kRegistered = 1600,
    kRegistrationFailed = 1601,
    kKeyReceived = 1602,
    kFileReceived = 1603,
    kAck = 1604,
    kReconnected = 1605,
    kReconnectDenied = 1606,
    kServerError = 1607,
};

// "1603 (file received)"; unknown codes are shown as the bare number.
std::string describe(Response code);
std::string describe_code(std::uint16_t code);
bool is_known_response(std::uint16_t code) noexcept;

void append_u16(Bytes& out, std::uint16_t value);
void append_u32(Bytes& out, std::uint32_t value);
std::uint16_t load_u16(const std::uint8_t* p) noexcept;
std::uint32_t load_u32(const std::uint8_t* p) noexcept;

// A 255-byte NUL-padded string field. Throws std::invalid_argument when the text is
// empty, longer than 254 bytes or contains a NUL.
void append_name_field(Bytes& out, std::string_view text);
// The text of a 255-byte field, up to its first NUL.
std::string read_name_field(const std::uint8_t* field);

void append_request_header(Bytes& out, const ClientId& id, Request code, std::uint32_t payload_size);

Bytes register_request(const ClientId& id, std::string_view name);   // 825
Bytes reconnect_request(const ClientId& id, std::string_view name);  // 827
Bytes public_key_request(const ClientId& id, std::string_view name, const Bytes& public_key);
// 900, 901 or 902.
Bytes crc_request(const ClientId& id, Request code, std::string_view file_name);

struct PacketHeader {
    std::uint32_t content_size = 0;    // whole ciphertext size
    std::uint32_t orig_file_size = 0;  // whole plaintext size
    std::uint16_t packet_number = 0;   // 1..total_packets
    std::uint16_t total_packets = 0;
    std::string file_name;             // base name
};
// Replaces `out` with a complete 828 frame (reusing its capacity).
void build_file_packet(Bytes& out, const ClientId& id, const PacketHeader& header,
                       const std::uint8_t* content, std::size_t content_size);

struct ResponseHeader {
    std::uint8_t version = 0;
    std::uint16_t code = 0;
    std::uint32_t payload_size = 0;
};
ResponseHeader parse_response_header(const std::array<std::uint8_t, kResponseHeaderSize>& raw) noexcept;
// Throws ProtocolError for a wrong version, an unknown code or an oversized payload.
void check_response_header(const ResponseHeader& header);

// Payload decoders: each checks the exact size for its code and throws ProtocolError.
ClientId parse_registered(const Bytes& payload);  // 1600

struct KeyDelivery {  // 1602 and 1605
    ClientId id{};
    std::array<std::uint8_t, kEncryptedKeySize> encrypted_key{};
};
KeyDelivery parse_key_delivery(Response code, const Bytes& payload);

struct FileReceived {  // 1603
    ClientId id{};
    std::uint32_t content_size = 0;
    std::string file_name;
    std::uint32_t cksum = 0;
};
FileReceived parse_file_received(const Bytes& payload);

// 1601, 1604, 1606, 1607: no data needed; the payload must be empty or a client id.
void check_optional_id_payload(Response code, const Bytes& payload);

// True for 1-254 printable ASCII characters (0x20-0x7E): the names version 3 carries
// (the Python client's rule, client/eft_client/transfer.py).
bool is_sendable_name(std::string_view name) noexcept;
// `text` safe to print on a terminal: printable ASCII kept, a backslash doubled, every
// other byte (escape sequences, control characters, non-ASCII) written as \xNN.
std::string escape_text(std::string_view text);

std::string to_hex(const std::uint8_t* data, std::size_t size);
std::string to_hex(const ClientId& id);

}  // namespace eft::wire
