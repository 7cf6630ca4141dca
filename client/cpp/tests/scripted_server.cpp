#include "scripted_server.h"

#include <algorithm>
#include <stdexcept>

#include "cksum.h"

namespace testing {

Bytes response(std::uint16_t code, const Bytes& payload) {
    Bytes out{eft::wire::kVersion};
    eft::wire::append_u16(out, code);
    eft::wire::append_u32(out, static_cast<std::uint32_t>(payload.size()));
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

ScriptedServer::ScriptedServer(Script script, Bytes known_public_der)
    : script_(std::move(script)), public_der_(std::move(known_public_der)) {}

void ScriptedServer::handle(const Bytes& frame, Bytes& out) {
    if (frame.size() < eft::wire::kRequestHeaderSize) throw std::runtime_error("short request");
    const std::uint16_t code = eft::wire::load_u16(frame.data() + 17);
    // A reconnecting client is known by the id it sends: the answers carry that id.
    if (code == 827) std::copy(frame.begin(), frame.begin() + eft::wire::kClientIdSize, id.begin());
    const std::uint32_t size = eft::wire::load_u32(frame.data() + 19);
    if (frame[16] != eft::wire::kVersion || frame.size() != eft::wire::kRequestHeaderSize + size) {
        throw std::runtime_error("malformed request " + std::to_string(code));
    }
    requests.push_back(code);
    Bytes reply;
    if (code != 828 && take_1607(code)) {
        reply = response(1607);
    } else {
        reply = reply_to(code, frame.data() + eft::wire::kRequestHeaderSize, size);
        if (reply.empty()) return;  // no reply (a packet before the last, 901)
        if (const auto r = script_.replace.find(code); r != script_.replace.end()) reply = r->second;
    }
    out.insert(out.end(), reply.begin(), reply.end());
}

bool ScriptedServer::take_1607(std::uint16_t code) {
    const auto budget = script_.errors_1607.find(code);
    if (budget == script_.errors_1607.end() || budget->second == 0) return false;
    --budget->second;
    return true;
}

Bytes ScriptedServer::new_key(std::uint16_t code) {
    std::uint8_t raw[32];
    for (std::size_t i = 0; i < sizeof raw; ++i) raw[i] = static_cast<std::uint8_t>(0x40 + i);
    key_.emplace(raw, sizeof raw);
    const Bytes wrapped = eft::crypto::rsa_encrypt(public_der_, Bytes(raw, raw + sizeof raw));
    Bytes payload(id.begin(), id.end());
    payload.insert(payload.end(), wrapped.begin(), wrapped.end());
    return response(code, payload);
}

Bytes ScriptedServer::reply_to(std::uint16_t code, const std::uint8_t* p, std::size_t size) {
    const Bytes with_id(id.begin(), id.end());
    switch (code) {
        case 825:
            for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<std::uint8_t>(0xA0 + i);
            return response(1600, Bytes(id.begin(), id.end()));
        case 826:
            public_der_.assign(p + eft::wire::kNameFieldSize, p + size);
            return new_key(1602);
        case 827:
            if (script_.deny_reconnect || public_der_.empty()) return response(1606, with_id);
            return new_key(1605);
        case 828: {
            const std::uint32_t content_size = eft::wire::load_u32(p);
            const std::uint16_t number = eft::wire::load_u16(p + 8);
            const std::uint16_t total = eft::wire::load_u16(p + 10);
            const std::string name = eft::wire::read_name_field(p + 12);
            if (number == 1) cipher_.clear();
            cipher_.insert(cipher_.end(), p + eft::wire::kPacketFieldsSize, p + size);
            if (number != total) return {};
            if (take_1607(828)) return response(1607);
            if (cipher_.size() != content_size) throw std::runtime_error("content size differs");
            const Bytes plain = eft::crypto::aes_cbc_decrypt(*key_, cipher_);
            files[name] = plain;
            std::uint32_t crc = eft::cksum(plain.data(), plain.size());
            ++crc_answers_;
            if (script_.corrupt_crc < 0 || crc_answers_ <= script_.corrupt_crc) crc ^= 1u;
            Bytes payload = with_id;
            eft::wire::append_u32(payload, content_size);
            const std::string echoed = script_.echo_name.value_or(name);
            payload.insert(payload.end(), echoed.begin(), echoed.end());
            payload.resize(payload.size() + eft::wire::kNameFieldSize - echoed.size(), 0);
            eft::wire::append_u32(payload, crc);
            return response(1603, payload);
        }
        case 900:
        case 902:
            return response(1604, with_id);
        case 901:
            return script_.answer_901 ? response(1604, with_id) : Bytes{};
        default:
            return response(1607);
    }
}

}  // namespace testing
