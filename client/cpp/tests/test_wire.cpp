// Spec section 9: frame vectors, and the checks on responses.
#include <array>
#include <stdexcept>
#include <string>

#include "crypto.h"
#include "errors.h"
#include "harness.h"
#include "wire.h"

using eft::wire::Bytes;
using eft::wire::ClientId;

namespace {

ClientId counting_id() {
    ClientId id{};
    for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<std::uint8_t>(i);
    return id;
}

std::string padded_hex(const std::string& text, std::size_t field = 255) {
    Bytes b = harness::bytes(text);
    b.resize(field, 0);
    return harness::hex(b);
}

Bytes response(std::uint16_t code, const Bytes& payload) {
    Bytes out{3};
    eft::wire::append_u16(out, code);
    eft::wire::append_u32(out, static_cast<std::uint32_t>(payload.size()));
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

eft::wire::ResponseHeader header_of(const Bytes& frame) {
    std::array<std::uint8_t, 7> raw{};
    std::copy(frame.begin(), frame.begin() + 7, raw.begin());
    return eft::wire::parse_response_header(raw);
}

}  // namespace

TEST_CASE("wire", "825 register frame for Alice") {
    const Bytes frame = eft::wire::register_request(ClientId{}, "Alice");
    CHECK_EQ(frame.size(), 278u);
    const std::string expected = "00000000000000000000000000000000" "03" "3903" "ff000000" + padded_hex("Alice");
    CHECK_EQ(harness::hex(frame), expected);
}

TEST_CASE("wire", "828 frame of hello.txt") {
    std::vector<std::uint8_t> k(32);
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(i);
    const eft::crypto::AesKey key(k.data(), k.size());
    const Bytes cipher = eft::crypto::aes_cbc_encrypt(key, harness::bytes("hello world\n"));
    eft::wire::PacketHeader h{16, 12, 1, 1, "hello.txt"};
    Bytes frame;
    eft::wire::build_file_packet(frame, counting_id(), h, cipher.data(), cipher.size());
    CHECK_EQ(frame.size(), 306u);
    const std::string expected = "000102030405060708090a0b0c0d0e0f" "03" "3c03" "1b010000"
                                 "10000000" "0c000000" "0100" "0100" +
                                 padded_hex("hello.txt") + "0b2c878e3b34b315443e0f44b3091802";
    CHECK_EQ(harness::hex(frame), expected);
}

TEST_CASE("wire", "1603 of hello.txt decodes") {
    const Bytes frame = harness::unhex("03 4306 17010000 000102030405060708090a0b0c0d0e0f 10000000" +
                                       padded_hex("hello.txt") + "5dec86de");
    CHECK_EQ(frame.size(), 286u);
    const auto h = header_of(frame);
    CHECK_EQ(static_cast<int>(h.version), 3);
    CHECK_EQ(h.code, 1603);
    CHECK_EQ(h.payload_size, 279u);
    eft::wire::check_response_header(h);
    const Bytes payload(frame.begin() + 7, frame.end());
    const auto r = eft::wire::parse_file_received(payload);
    CHECK(r.id == counting_id());
    CHECK_EQ(r.content_size, 16u);
    CHECK_EQ(r.file_name, std::string("hello.txt"));
    CHECK_EQ(r.cksum, 3733384285u);
}

TEST_CASE("wire", "code bytes") {
    const ClientId id{};
    CHECK_EQ(harness::hex(eft::wire::register_request(id, "x")).substr(34, 4), std::string("3903"));
    CHECK_EQ(harness::hex(eft::wire::reconnect_request(id, "x")).substr(34, 4), std::string("3b03"));
    CHECK_EQ(harness::hex(eft::wire::public_key_request(id, "x", Bytes(160))).substr(34, 4), std::string("3a03"));
    CHECK_EQ(harness::hex(eft::wire::crc_request(id, eft::wire::Request::kCrcOk, "f")).substr(34, 4), std::string("8403"));
    CHECK_EQ(harness::hex(eft::wire::crc_request(id, eft::wire::Request::kCrcRetry, "f")).substr(34, 4), std::string("8503"));
    CHECK_EQ(harness::hex(eft::wire::crc_request(id, eft::wire::Request::kCrcGiveUp, "f")).substr(34, 4), std::string("8603"));
    CHECK_EQ(harness::hex(response(1600, {})).substr(2, 4), std::string("4006"));
    CHECK_EQ(harness::hex(response(1607, {})).substr(2, 4), std::string("4706"));
}

TEST_CASE("wire", "826 frame layout") {
    Bytes key(160);
    for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i);
    const Bytes frame = eft::wire::public_key_request(counting_id(), "Bob", key);
    CHECK_EQ(frame.size(), 23u + 415u);
    CHECK_EQ(harness::hex(Bytes(frame.begin() + 19, frame.begin() + 23)), std::string("9f010000"));
    CHECK(Bytes(frame.begin() + 23 + 255, frame.end()) == key);
    CHECK_THROWS(std::invalid_argument, eft::wire::public_key_request(counting_id(), "Bob", Bytes(162)));
}

TEST_CASE("wire", "name fields: 254 bytes max, no NUL, not empty") {
    CHECK_EQ(eft::wire::register_request(ClientId{}, std::string(254, 'n')).size(), 278u);
    CHECK_THROWS(std::invalid_argument, eft::wire::register_request(ClientId{}, std::string(255, 'n')));
    CHECK_THROWS(std::invalid_argument, eft::wire::register_request(ClientId{}, std::string("a\0b", 3)));
    CHECK_THROWS(std::invalid_argument, eft::wire::register_request(ClientId{}, ""));
    Bytes field(255, 'z');  // no NUL at all: read stops at the field's end
    CHECK_EQ(eft::wire::read_name_field(field.data()).size(), 255u);
}

TEST_CASE("wire", "response headers are checked before use") {
    eft::wire::ResponseHeader h{3, 1603, 279};
    eft::wire::check_response_header(h);
    h.payload_size = eft::wire::kMaxResponsePayload + 1;
    CHECK_THROWS(eft::ProtocolError, eft::wire::check_response_header(h));
    h.payload_size = 0xFFFFFFFFu;
    CHECK_THROWS(eft::ProtocolError, eft::wire::check_response_header(h));
    h = {2, 1603, 279};
    CHECK_THROWS(eft::ProtocolError, eft::wire::check_response_header(h));
    h = {3, 1608, 0};
    CHECK_THROWS(eft::ProtocolError, eft::wire::check_response_header(h));
    h = {3, 1599, 0};
    CHECK_THROWS(eft::ProtocolError, eft::wire::check_response_header(h));
}

TEST_CASE("wire", "payload sizes are exact for each code") {
    CHECK_THROWS(eft::ProtocolError, eft::wire::parse_registered(Bytes(15)));
    CHECK_THROWS(eft::ProtocolError, eft::wire::parse_registered(Bytes(17)));
    ClientId sevens{};
    sevens.fill(7);
    CHECK(eft::wire::parse_registered(Bytes(16, 7)) == sevens);
    CHECK_THROWS(eft::ProtocolError, eft::wire::parse_key_delivery(eft::wire::Response::kKeyReceived, Bytes(143)));
    CHECK_THROWS(eft::ProtocolError, eft::wire::parse_key_delivery(eft::wire::Response::kReconnected, Bytes(16)));
    const auto d = eft::wire::parse_key_delivery(eft::wire::Response::kKeyReceived, Bytes(144, 1));
    CHECK_EQ(static_cast<int>(d.encrypted_key[127]), 1);
    CHECK_THROWS(eft::ProtocolError, eft::wire::parse_file_received(Bytes(278)));
    CHECK_THROWS(eft::ProtocolError, eft::wire::parse_file_received(Bytes()));
    // 1606 (and 1601, 1604, 1607): empty or a client id.
    eft::wire::check_optional_id_payload(eft::wire::Response::kReconnectDenied, Bytes());
    eft::wire::check_optional_id_payload(eft::wire::Response::kReconnectDenied, Bytes(16));
    CHECK_THROWS(eft::ProtocolError,
                 eft::wire::check_optional_id_payload(eft::wire::Response::kReconnectDenied, Bytes(5)));
}

TEST_CASE("wire", "little-endian helpers") {
    Bytes b;
    eft::wire::append_u32(b, 0x01020304u);
    eft::wire::append_u16(b, 0xA1B2u);
    CHECK_EQ(harness::hex(b), std::string("04030201b2a1"));
    CHECK_EQ(eft::wire::load_u32(b.data()), 0x01020304u);
    CHECK_EQ(eft::wire::load_u16(b.data() + 4), 0xA1B2u);
    const Bytes max = {0xFF, 0xFF, 0xFF, 0xFF};
    CHECK_EQ(eft::wire::load_u32(max.data()), 0xFFFFFFFFu);
}

TEST_CASE("wire", "sendable names and escaped text") {
    CHECK(eft::wire::is_sendable_name("report.pdf"));
    CHECK(eft::wire::is_sendable_name(std::string(254, 'x')));
    CHECK(!eft::wire::is_sendable_name(std::string(255, 'x')));
    CHECK(!eft::wire::is_sendable_name(""));
    CHECK(!eft::wire::is_sendable_name("r\xc3\xa9sum\xc3\xa9.bin"));
    CHECK(!eft::wire::is_sendable_name("a\nb"));
    CHECK_EQ(eft::wire::escape_text("ok ~!"), std::string("ok ~!"));
    CHECK_EQ(eft::wire::escape_text("\x1b]0;pwned\x07"), std::string("\\x1b]0;pwned\\x07"));
    CHECK_EQ(eft::wire::escape_text("a\\b\xc3\xa9\x7f"), std::string("a\\\\b\\xc3\\xa9\\x7f"));
}
