// Cryptography of the protocol (spec section 5), on top of Crypto++: the client's RSA-1024
// (e = 17) key pair, RSAES-OAEP-SHA1 key transport, streaming AES-256-CBC with a zero IV
// and PKCS#7 padding, and Base64. Crypto++ types stay inside crypto.cpp, except
// SecByteBlock: every buffer that holds key material is one, so it is wiped when freed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <cryptopp/secblock.h>

namespace eft::crypto {

using Bytes = std::vector<std::uint8_t>;
// Key material: zeroed when freed or resized (CryptoPP::AllocatorWithCleanup).
using SecretBytes = CryptoPP::SecByteBlock;

// A key or Base64 text that cannot be decoded.
class CryptoError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

inline constexpr unsigned kRsaBits = 1024;
inline constexpr unsigned kRsaPublicExponent = 17;
inline constexpr std::size_t kPublicKeyDerSize = 160;

class RsaPrivateKey {
public:
    // A fresh RSA-1024 key with e = 17 whose public DER is exactly 160 bytes.
    static RsaPrivateKey generate();
    // PKCS#8 PrivateKeyInfo DER (what Crypto++ and the Python client write); a bare
    // PKCS#1 RSAPrivateKey is accepted too. Throws CryptoError.
    static RsaPrivateKey from_der(const std::uint8_t* der, std::size_t size);
    static RsaPrivateKey from_der(const SecretBytes& der) { return from_der(der.data(), der.size()); }
    static RsaPrivateKey from_der(const Bytes& der) { return from_der(der.data(), der.size()); }

    RsaPrivateKey(RsaPrivateKey&&) noexcept;
    RsaPrivateKey& operator=(RsaPrivateKey&&) noexcept;
    RsaPrivateKey(const RsaPrivateKey&) = delete;
    RsaPrivateKey& operator=(const RsaPrivateKey&) = delete;
    ~RsaPrivateKey();

    SecretBytes private_key_der() const;  // PKCS#8
    Bytes public_key_der() const;         // X.509 SubjectPublicKeyInfo
    // RSAES-OAEP with SHA-1/MGF1-SHA-1, empty label. Throws CryptoError.
    SecretBytes decrypt(const std::uint8_t* ciphertext, std::size_t size) const;

private:
    struct Impl;
    explicit RsaPrivateKey(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

// Encrypts with a public key in X.509 DER (the server's side; used by tests).
Bytes rsa_encrypt(const Bytes& public_key_der, const Bytes& plaintext);

// 32 key bytes in a SecByteBlock (wiped when freed). Move-only: there is one copy of
// the session key, and a moved-from key is empty.
class AesKey {
public:
    static constexpr std::size_t kSize = 32;
    // Throws CryptoError unless size == 32.
    AesKey(const std::uint8_t* data, std::size_t size);
    AesKey(AesKey&&) noexcept = default;
    AesKey& operator=(AesKey&&) noexcept = default;
    AesKey(const AesKey&) = delete;
    AesKey& operator=(const AesKey&) = delete;
    ~AesKey() = default;
    const std::uint8_t* data() const noexcept { return bytes_->data(); }
    bool empty() const noexcept { return !bytes_; }

private:
    std::unique_ptr<SecretBytes> bytes_;  // a pointer, so that moving cannot throw
};

// AES-256-CBC, IV of 16 zero bytes, PKCS#7: feed the plaintext in pieces of any size,
// get the ciphertext appended to `out` as whole blocks become available.
class AesCbcEncryptor {
public:
    explicit AesCbcEncryptor(const AesKey& key);
    AesCbcEncryptor(const AesCbcEncryptor&) = delete;
    AesCbcEncryptor& operator=(const AesCbcEncryptor&) = delete;
    ~AesCbcEncryptor();

    void update(const std::uint8_t* data, std::size_t size, Bytes& out);
    // Pads and appends the last block. The encryptor cannot be used afterwards.
    void finish(Bytes& out);

    static std::uint64_t ciphertext_size(std::uint64_t plaintext_size) {
        return 16 * (plaintext_size / 16 + 1);
    }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// One-shot helpers (tests, and decryption of what a test server received).
Bytes aes_cbc_encrypt(const AesKey& key, const Bytes& plaintext);
Bytes aes_cbc_decrypt(const AesKey& key, const Bytes& ciphertext);  // throws CryptoError

std::string base64_encode(const Bytes& data);  // one line, no breaks
SecretBytes base64_encode_secret(const SecretBytes& data);  // the same, for key material
// Accepts the Base64 alphabet with any ASCII whitespace between characters; anything
// else (or a bad length) throws CryptoError.
Bytes base64_decode(std::string_view text);
SecretBytes base64_decode_secret(std::string_view text);  // intermediates wiped too

}  // namespace eft::crypto
