#include "wire.h"

#include <algorithm>
#include <stdexcept>

#include "errors.h"

namespace eft::wire {
namespace {

constexpr std::size_t kFileReceivedSize = kClientIdSize + 4 + kNameFieldSize + 4;  // 279
constexpr std::size_t kKeyDeliverySize = kClientIdSize + kEncryptedKeySize;        // 144

ClientId read_id(const std::uint8_t* p) {
    ClientId id{};
    std::copy(p, p + kClientIdSize, id.begin());
    return id;
}

void expect_size(Response code, const Bytes& payload, std::size_t expected) {
    if (payload.size() != expected) {
        throw ProtocolError("response " + describe(code) + " has a " +
                            std::to_string(payload.size()) + "-byte payload; expected " +
                            std::to_string(expected));
    }
}

Bytes name_only_request(const ClientId& id, Request code, std::string_view text) {
    Bytes out;
    out.reserve(kRequestHeaderSize + kNameFieldSize);
    append_request_header(out, id, code, static_cast<std::uint32_t>(kNameFieldSize));
    append_name_field(out, text);
    return out;
}

}  // namespace

std::string describe(Response code) { return describe_code(static_cast<std::uint16_t>(code)); }

std::string describe_code(std::uint16_t code) {
    const char* meaning = nullptr;
    switch (code) {
        case 1600: meaning = "registration ok"; break;
        case 1601: meaning = "registration failed"; break;
        case 1602: meaning = "public key received"; break;
        case 1603: meaning = "file received"; break;
        case 1604: meaning = "acknowledged"; break;
        case 1605: meaning = "reconnect approved"; break;
        case 1606: meaning = "reconnect denied"; break;
        case 1607: meaning = "general server error"; break;
        default: break;
    }
    std::string text = std::to_string(code);
    if (meaning != nullptr) text += std::string(" (") + meaning + ")";
    return text;
}

bool is_known_response(std::uint16_t code) noexcept { return code >= 1600 && code <= 1607; }

void append_u16(Bytes& out, std::uint16_t value) {
    out.push_back(static_cast<std::uint8_t>(value & 0xFFu));
    out.push_back(static_cast<std::uint8_t>((value >> 8) & 0xFFu));
}

void append_u32(Bytes& out, std::uint32_t value) {
    for (int shift = 0; shift < 32; shift += 8) {
        out.push_back(static_cast<std::uint8_t>((value >> shift) & 0xFFu));
    }
}

std::uint16_t load_u16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}

std::uint32_t load_u32(const std::uint8_t* p) noexcept {
    return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
           (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

void append_name_field(Bytes& out, std::string_view text) {
    if (text.empty()) throw std::invalid_argument("a name field cannot be empty");
    if (text.size() > kMaxNameLength) {
        throw std::invalid_argument("'" + std::string(text.substr(0, 40)) + "...' is " +
                                    std::to_string(text.size()) +
                                    " bytes long; a name field holds at most 254");
    }
    if (text.find('\0') != std::string_view::npos) {
        throw std::invalid_argument("a name field cannot contain a NUL byte");
    }
    out.insert(out.end(), text.begin(), text.end());
    out.insert(out.end(), kNameFieldSize - text.size(), std::uint8_t{0});
}

std::string read_name_field(const std::uint8_t* field) {
    const std::uint8_t* end = std::find(field, field + kNameFieldSize, std::uint8_t{0});
    return std::string(field, end);
}

void append_request_header(Bytes& out, const ClientId& id, Request code, std::uint32_t payload_size) {
    out.insert(out.end(), id.begin(), id.end());
    out.push_back(kVersion);
    append_u16(out, static_cast<std::uint16_t>(code));
    append_u32(out, payload_size);
}

Bytes register_request(const ClientId& id, std::string_view name) {
    return name_only_request(id, Request::kRegister, name);
}

Bytes reconnect_request(const ClientId& id, std::string_view name) {
    return name_only_request(id, Request::kReconnect, name);
}

Bytes public_key_request(const ClientId& id, std::string_view name, const Bytes& public_key) {
    if (public_key.size() != kPublicKeySize) {
        throw std::invalid_argument("the public key must be " + std::to_string(kPublicKeySize) +
                                    " bytes, not " + std::to_string(public_key.size()));
    }
    Bytes out;
    out.reserve(kRequestHeaderSize + kNameFieldSize + kPublicKeySize);
    append_request_header(out, id, Request::kPublicKey,
                          static_cast<std::uint32_t>(kNameFieldSize + kPublicKeySize));
    append_name_field(out, name);
    out.insert(out.end(), public_key.begin(), public_key.end());
    return out;
}

Bytes crc_request(const ClientId& id, Request code, std::string_view file_name) {
    if (code != Request::kCrcOk && code != Request::kCrcRetry && code != Request::kCrcGiveUp) {
        throw std::invalid_argument("crc_request takes 900, 901 or 902");
    }
    return name_only_request(id, code, file_name);
}

void build_file_packet(Bytes& out, const ClientId& id, const PacketHeader& header,
                       const std::uint8_t* content, std::size_t content_size) {
    if (content_size > 0xFFFFFFFFu - kPacketFieldsSize) {
        throw std::invalid_argument("packet content too large");
    }
    out.clear();
    out.reserve(kRequestHeaderSize + kPacketFieldsSize + content_size);
    append_request_header(out, id, Request::kFilePacket,
                          static_cast<std::uint32_t>(kPacketFieldsSize + content_size));
    append_u32(out, header.content_size);
    append_u32(out, header.orig_file_size);
    append_u16(out, header.packet_number);
    append_u16(out, header.total_packets);
    append_name_field(out, header.file_name);
    out.insert(out.end(), content, content + content_size);
}

ResponseHeader parse_response_header(const std::array<std::uint8_t, kResponseHeaderSize>& raw) noexcept {
    ResponseHeader h;
    h.version = raw[0];
    h.code = load_u16(raw.data() + 1);
    h.payload_size = load_u32(raw.data() + 3);
    return h;
}

void check_response_header(const ResponseHeader& header) {
    if (header.version != kVersion) {
        throw ProtocolError("response with protocol version " + std::to_string(header.version) +
                            " (code " + std::to_string(header.code) + "); expected version 3");
    }
    if (!is_known_response(header.code)) {
        throw ProtocolError("unknown response code " + std::to_string(header.code));
    }
    if (header.payload_size > kMaxResponsePayload) {
        throw ProtocolError("response " + describe_code(header.code) + " announces a " +
                            std::to_string(header.payload_size) + "-byte payload (limit " +
                            std::to_string(kMaxResponsePayload) + ")");
    }
}

ClientId parse_registered(const Bytes& payload) {
    expect_size(Response::kRegistered, payload, kClientIdSize);
    return read_id(payload.data());
}

KeyDelivery parse_key_delivery(Response code, const Bytes& payload) {
    expect_size(code, payload, kKeyDeliverySize);
    KeyDelivery d;
    d.id = read_id(payload.data());
    std::copy(payload.begin() + kClientIdSize, payload.end(), d.encrypted_key.begin());
    return d;
}

FileReceived parse_file_received(const Bytes& payload) {
    expect_size(Response::kFileReceived, payload, kFileReceivedSize);
    const std::uint8_t* p = payload.data();
    FileReceived r;
    r.id = read_id(p);
    r.content_size = load_u32(p + kClientIdSize);
    r.file_name = read_name_field(p + kClientIdSize + 4);
    r.cksum = load_u32(p + kClientIdSize + 4 + kNameFieldSize);
    return r;
}

void check_optional_id_payload(Response code, const Bytes& payload) {
    if (!payload.empty() && payload.size() != kClientIdSize) {
        throw ProtocolError("response " + describe(code) + " has a " +
                            std::to_string(payload.size()) +
                            "-byte payload; expected 0 or 16");
    }
}

bool is_sendable_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > kMaxNameLength) return false;
    return std::all_of(name.begin(), name.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}

std::string escape_text(std::string_view text) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto byte = static_cast<std::uint8_t>(c);
        if (c == '\\') {
            out += "\\\\";
        } else if (byte >= 0x20 && byte <= 0x7E) {
            out.push_back(c);
        } else {
            out += "\\x";
            out.push_back(kDigits[byte >> 4]);
            out.push_back(kDigits[byte & 0x0F]);
        }
    }
    return out;
}

std::string to_hex(const std::uint8_t* data, std::size_t size) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        out.push_back(kDigits[data[i] >> 4]);
        out.push_back(kDigits[data[i] & 0x0F]);
    }
    return out;
}

std::string to_hex(const ClientId& id) { return to_hex(id.data(), id.size()); }

}  // namespace eft::wire
