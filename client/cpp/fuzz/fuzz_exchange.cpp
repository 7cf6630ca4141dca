// libFuzzer target: a whole exchange. The client session (register or reconnect, then two
// files) talks to a "server" whose replies come from the fuzzer's bytes: some built
// from well-formed parts (so the fuzzer gets past the key exchange: the OAEP ciphertext
// of a known AES key under the test key), some raw, all cut into pieces of any size.
// Any protocol failure must be an eft::Error of a protocol kind; an InternalError (a
// state the session should never reach) or a crash is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "cksum.h"
#include "client_session.h"
#include "crypto.h"
#include "errors.h"
#include "python_key_fixture.h"
#include "wire.h"

namespace {

using eft::wire::Bytes;

struct Input {
    const std::uint8_t* data;
    std::size_t size;
    std::uint8_t byte() {
        if (size == 0) return 0;
        --size;
        return *data++;
    }
};

const eft::crypto::SecretBytes& test_key_der() {
    static const eft::crypto::SecretBytes der = eft::crypto::base64_decode_secret(fixtures::kPythonKeyPkcs8Base64);
    return der;
}

eft::crypto::RsaPrivateKey test_key() { return eft::crypto::RsaPrivateKey::from_der(test_key_der()); }

eft::wire::ClientId test_id() {
    eft::wire::ClientId id{};
    for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<std::uint8_t>(0xA0 + i);
    return id;
}

Bytes response(std::uint16_t code, const Bytes& payload) {
    Bytes out{eft::wire::kVersion};
    eft::wire::append_u16(out, code);
    eft::wire::append_u32(out, static_cast<std::uint32_t>(payload.size()));
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

Bytes with_id(const Bytes& rest = {}) {
    const auto id = test_id();
    Bytes out(id.begin(), id.end());
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
}

Bytes file_received(const std::string& name, std::uint32_t content_size, std::uint32_t cksum) {
    Bytes payload = with_id();
    eft::wire::append_u32(payload, content_size);
    payload.insert(payload.end(), name.begin(), name.end());
    payload.resize(payload.size() + eft::wire::kNameFieldSize - name.size(), 0);
    eft::wire::append_u32(payload, cksum);
    return response(1603, payload);
}

Bytes next_reply(Input& in, std::uint32_t content_size, std::uint32_t good_cksum) {
    static const Bytes oaep = [] {
        const std::string hex = fixtures::kPythonOaepOfCountingKeyHex;
        Bytes out;
        for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
            out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
        }
        return out;
    }();
    switch (in.byte() % 12) {
        case 0: return response(1600, with_id());
        case 1: return response(1601, in.byte() & 1 ? with_id() : Bytes{});
        case 2: return response(1602, with_id(oaep));
        case 3: return file_received("f.bin", content_size, in.byte() & 1 ? good_cksum : good_cksum ^ 1u);
        case 4: return response(1604, with_id());
        case 5: return response(1605, with_id(oaep));
        case 6: return response(1606, in.byte() & 1 ? with_id() : Bytes{});
        case 7: return response(1607, {});
        case 8: return file_received("\x1b[2J\x9b", content_size, good_cksum);
        default: {  // raw bytes
            Bytes raw(in.byte() % 40);
            for (auto& b : raw) b = in.byte();
            return raw;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Input in{data, size};
    const std::uint8_t mode = in.byte();
    eft::NullReporter reporter;
    std::optional<eft::config::MeInfo> me;
    if (mode & 1) me.emplace("Alice", test_id(), test_key_der());
    eft::ClientSession session("Alice", std::move(me), reporter, &test_key);

    eft::TransferPlan plan = eft::plan_for_size(40, 16);
    plan.file_name = "f.bin";
    plan.path = "f.bin";
    const Bytes content(40, 0x5A);
    const std::uint32_t good_cksum = eft::cksum(content.data(), content.size());
    const eft::FrameSink ignore = [](const Bytes&, std::uint16_t) {};

    try {
        (void)session.start();
        int files_left = 2;
        bool in_file = false;
        bool resend = false;
        for (int round = 0; round < 64 && in.size > 0; ++round) {
            if ((session.ready() && files_left > 0 && !in_file) || resend) {
                session.begin_file(plan);
                session.file_data(content.data(), content.size(), ignore);
                session.end_file(ignore);
                in_file = true;
                resend = false;
            }
            if (session.ready() && !in_file) break;  // every file sent
            const Bytes reply = next_reply(in, plan.content_size, good_cksum);
            const std::size_t piece = 1 + in.byte() % 8;
            for (std::size_t at = 0; at < reply.size(); at += piece) {
                session.feed(reply.data() + at, reply.size() - at < piece ? reply.size() - at : piece);
                while (auto step = session.next()) {
                    if (step->send_file) resend = true;
                    if (step->file_done) {
                        in_file = false;
                        --files_left;
                    }
                }
            }
        }
    } catch (const eft::InternalError&) {
        std::abort();  // the session reached a state it should never reach
    } catch (const eft::Error&) {
        // a protocol error, a refusal, 1607 too often, CRC given up: all expected
    } catch (const eft::crypto::CryptoError&) {
        std::abort();  // must have become a ProtocolError
    }
    return 0;
}
