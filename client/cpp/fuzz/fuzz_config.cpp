// libFuzzer target: everything the client decodes from its own files and flags:
// transfer.info, me.info (with a priv.key fallback), HOST:PORT, Base64 and RSA DER keys.
// Bad input must be a UsageError or CryptoError, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cli.h"
#include "config.h"
#include "crypto.h"
#include "errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t which = data[0];
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    try {
        switch (which % 6) {
            case 0: (void)eft::config::parse_transfer_info(text); break;
            case 1: (void)eft::config::parse_me_info(text); break;
            case 2: {
                // me.info's first half, priv.key's text the second
                const std::size_t half = text.size() / 2;
                (void)eft::config::parse_me_info(text.substr(0, half), text.substr(half));
                break;
            }
            case 3: (void)eft::config::parse_endpoint(text); break;
            case 4: (void)eft::crypto::base64_decode_secret(text); break;
            default: (void)eft::crypto::RsaPrivateKey::from_der(data + 1, size - 1); break;
        }
    } catch (const eft::UsageError&) {
    } catch (const eft::crypto::CryptoError&) {
    }
    return 0;
}
