// Establishing a session (spec section 4): register (825 -> 1600, 826 -> 1602) or
// reconnect (827 -> 1605, or 1606 -> register anew), ending with the session's AES key.
#pragma once

#include <optional>
#include <string>

#include "channel.h"
#include "config.h"
#include "crypto.h"
#include "wire.h"

namespace eft {

struct SessionKeys {
    std::string name;
    wire::ClientId id{};
    crypto::AesKey aes_key;
};

class KeyExchange {
public:
    KeyExchange(Channel& channel, Reporter& reporter, const config::ConfigDir& config)
        : channel_(channel), reporter_(reporter), config_(config) {}

    // `name` is used to register; `me` (me.info), when present, to reconnect first.
    SessionKeys establish(const std::string& name, const std::optional<config::MeInfo>& me);

private:
    SessionKeys register_new(const std::string& name);
    std::optional<SessionKeys> reconnect(const config::MeInfo& me);
    crypto::AesKey unwrap_key(const crypto::RsaPrivateKey& key, const wire::KeyDelivery& delivery,
                              const wire::ClientId& id, const char* code) const;

    Channel& channel_;
    Reporter& reporter_;
    const config::ConfigDir& config_;
};

}  // namespace eft
