#include "session.h"

#include "errors.h"

namespace eft {

SessionKeys KeyExchange::establish(const std::string& name, const std::optional<config::MeInfo>& me) {
    if (me) {
        if (auto keys = reconnect(*me)) return std::move(*keys);
    }
    return register_new(name);
}

std::optional<SessionKeys> KeyExchange::reconnect(const config::MeInfo& me) {
    reporter_.info("reconnecting as " + me.name + " (client id " + wire::to_hex(me.id) + ")");
    const Reply reply = request(channel_, reporter_, wire::reconnect_request(me.id, me.name), "827 (reconnect)");
    switch (reply.code) {
        case wire::Response::kReconnected: {
            const auto delivery = wire::parse_key_delivery(reply.code, reply.payload);
            crypto::RsaPrivateKey key = [&] {
                try {
                    return crypto::RsaPrivateKey::from_der(me.private_key_der);
                } catch (const crypto::CryptoError& e) {
                    throw UsageError(std::string("me.info: the private key cannot be loaded: ") + e.what());
                }
            }();
            SessionKeys keys{me.name, me.id, unwrap_key(key, delivery, me.id, "1605")};
            reporter_.info("reconnected; received a new AES key");
            return keys;
        }
        case wire::Response::kReconnectDenied:
            wire::check_optional_id_payload(reply.code, reply.payload);
            reporter_.info("reconnect denied (1606): registering as a new client");
            return std::nullopt;
        default:
            unexpected_reply(reply, "to 827 (reconnect)");
    }
}

SessionKeys KeyExchange::register_new(const std::string& name) {
    reporter_.info("registering as " + name);
    const wire::ClientId no_id{};
    const Reply reply = request(channel_, reporter_, wire::register_request(no_id, name), "825 (register)");
    if (reply.code == wire::Response::kRegistrationFailed) {
        wire::check_optional_id_payload(reply.code, reply.payload);
        throw RefusedError("registration refused by the server (1601): the name '" + name +
                           "' is probably taken");
    }
    if (reply.code != wire::Response::kRegistered) unexpected_reply(reply, "to 825 (register)");
    const wire::ClientId id = wire::parse_registered(reply.payload);
    reporter_.info("registered; client id " + wire::to_hex(id));

    crypto::RsaPrivateKey key = crypto::RsaPrivateKey::generate();
    const auto public_der = key.public_key_der();
    if (public_der.size() != crypto::kPublicKeyDerSize) {
        throw InternalError("the public key DER is " + std::to_string(public_der.size()) +
                            " bytes; the protocol needs 160");
    }
    const config::MeInfo me{name, id, key.private_key_der()};
    config_.save_identity(me);
    reporter_.info("wrote me.info and priv.key");

    const Reply key_reply =
        request(channel_, reporter_, wire::public_key_request(id, name, public_der), "826 (public key)");
    if (key_reply.code != wire::Response::kKeyReceived) unexpected_reply(key_reply, "to 826 (public key)");
    const auto delivery = wire::parse_key_delivery(key_reply.code, key_reply.payload);
    SessionKeys keys{name, id, unwrap_key(key, delivery, id, "1602")};
    reporter_.info("received the AES key");
    return keys;
}

crypto::AesKey KeyExchange::unwrap_key(const crypto::RsaPrivateKey& key, const wire::KeyDelivery& delivery,
                                       const wire::ClientId& id, const char* code) const {
    if (delivery.id != id) {
        reporter_.warn(std::string(code) + " carries client id " + wire::to_hex(delivery.id) + ", not ours (" +
                      wire::to_hex(id) + ")");
    }
    try {
        const auto plain = key.decrypt(delivery.encrypted_key.data(), delivery.encrypted_key.size());
        return crypto::AesKey(plain.data(), plain.size());
    } catch (const crypto::CryptoError& e) {
        throw ProtocolError(std::string("cannot use the AES key of ") + code + ": " + e.what());
    }
}

}  // namespace eft
