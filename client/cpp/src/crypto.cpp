#include "crypto.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include <cryptopp/aes.h>
#include <cryptopp/base64.h>
#include <cryptopp/misc.h>
#include <cryptopp/modes.h>
#include <cryptopp/osrng.h>
#include <cryptopp/queue.h>
#include <cryptopp/rsa.h>

namespace eft::crypto {
namespace {

constexpr std::size_t kBlock = 16;

template <typename Buffer>
Buffer drain(CryptoPP::BufferedTransformation& queue) {
    Buffer out(static_cast<std::size_t>(queue.MaxRetrievable()));
    if (out.size() > 0) queue.Get(out.data(), out.size());
    return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

bool is_base64_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

}  // namespace

// ---------------------------------------------------------------- RSA

struct RsaPrivateKey::Impl {
    CryptoPP::RSA::PrivateKey key;
};

RsaPrivateKey::RsaPrivateKey(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
RsaPrivateKey::RsaPrivateKey(RsaPrivateKey&&) noexcept = default;
RsaPrivateKey& RsaPrivateKey::operator=(RsaPrivateKey&&) noexcept = default;
RsaPrivateKey::~RsaPrivateKey() = default;

RsaPrivateKey RsaPrivateKey::generate() {
    CryptoPP::AutoSeededRandomPool rng;
    for (int attempt = 0; attempt < 8; ++attempt) {
        auto impl = std::make_unique<Impl>();
        impl->key.Initialize(rng, kRsaBits, CryptoPP::Integer(static_cast<long>(kRsaPublicExponent)));
        RsaPrivateKey key(std::move(impl));
        if (key.public_key_der().size() == kPublicKeyDerSize) return key;
    }
    throw CryptoError("could not generate an RSA key whose public DER is 160 bytes");
}

RsaPrivateKey RsaPrivateKey::from_der(const std::uint8_t* der, std::size_t size) {
    if (size == 0) throw CryptoError("the private key is empty");
    CryptoPP::AutoSeededRandomPool rng;
    auto impl = std::make_unique<Impl>();
    bool loaded = false;
    try {  // PKCS#8 PrivateKeyInfo
        CryptoPP::ByteQueue queue;
        queue.Put(der, size);
        queue.MessageEnd();
        impl->key.Load(queue);
        loaded = queue.MaxRetrievable() == 0;
    } catch (const CryptoPP::Exception&) {
        loaded = false;
    }
    if (!loaded) {
        try {  // bare PKCS#1 RSAPrivateKey
            impl = std::make_unique<Impl>();
            CryptoPP::ByteQueue queue;
            queue.Put(der, size);
            queue.MessageEnd();
            impl->key.BERDecodePrivateKey(queue, false, static_cast<std::size_t>(queue.MaxRetrievable()));
            loaded = queue.MaxRetrievable() == 0;
        } catch (const CryptoPP::Exception&) {
            loaded = false;
        }
    }
    if (!loaded) throw CryptoError("not an RSA private key in PKCS#8 or PKCS#1 DER");
    if (!impl->key.Validate(rng, 1)) throw CryptoError("the RSA private key is inconsistent");
    return RsaPrivateKey(std::move(impl));
}

SecretBytes RsaPrivateKey::private_key_der() const {
    CryptoPP::ByteQueue queue;
    impl_->key.Save(queue);  // PKCS#8 PrivateKeyInfo
    return drain<SecretBytes>(queue);
}

Bytes RsaPrivateKey::public_key_der() const {
    const CryptoPP::RSA::PublicKey pub(impl_->key);
    CryptoPP::ByteQueue queue;
    pub.Save(queue);  // X.509 SubjectPublicKeyInfo
    return drain<Bytes>(queue);
}

SecretBytes RsaPrivateKey::decrypt(const std::uint8_t* ciphertext, std::size_t size) const {
    CryptoPP::AutoSeededRandomPool rng;
    const CryptoPP::RSAES_OAEP_SHA_Decryptor decryptor(impl_->key);
    if (size != decryptor.FixedCiphertextLength()) {
        throw CryptoError("RSA ciphertext is " + std::to_string(size) + " bytes; expected " +
                          std::to_string(decryptor.FixedCiphertextLength()));
    }
    SecretBytes plain(decryptor.MaxPlaintextLength(size));
    CryptoPP::DecodingResult result;
    try {
        result = decryptor.Decrypt(rng, ciphertext, size, plain.data());
    } catch (const CryptoPP::Exception& e) {
        throw CryptoError(std::string("RSA-OAEP decryption failed: ") + e.what());
    }
    if (!result.isValidCoding) throw CryptoError("RSA-OAEP decryption failed (invalid padding)");
    plain.resize(result.messageLength);
    return plain;
}

Bytes rsa_encrypt(const Bytes& public_key_der, const Bytes& plaintext) {
    CryptoPP::AutoSeededRandomPool rng;
    CryptoPP::RSA::PublicKey pub;
    try {
        CryptoPP::ByteQueue queue;
        queue.Put(public_key_der.data(), public_key_der.size());
        queue.MessageEnd();
        pub.Load(queue);
    } catch (const CryptoPP::Exception& e) {
        throw CryptoError(std::string("bad public key: ") + e.what());
    }
    const CryptoPP::RSAES_OAEP_SHA_Encryptor encryptor(pub);
    if (plaintext.size() > encryptor.FixedMaxPlaintextLength()) throw CryptoError("plaintext too long");
    Bytes out(encryptor.CiphertextLength(plaintext.size()));
    encryptor.Encrypt(rng, plaintext.data(), plaintext.size(), out.data());
    return out;
}

// ---------------------------------------------------------------- AES

AesKey::AesKey(const std::uint8_t* data, std::size_t size) {
    if (size != kSize) {
        throw CryptoError("an AES-256 key is 32 bytes, not " + std::to_string(size));
    }
    bytes_ = std::make_unique<SecretBytes>(data, kSize);
}

struct AesCbcEncryptor::Impl {
    CryptoPP::CBC_Mode<CryptoPP::AES>::Encryption cipher;
    std::array<std::uint8_t, kBlock> partial{};
    std::size_t partial_size = 0;
    bool finished = false;

    void encrypt_blocks(const std::uint8_t* in, std::size_t size, Bytes& out) {
        const std::size_t at = out.size();
        out.resize(at + size);
        cipher.ProcessData(out.data() + at, in, size);
    }
};

AesCbcEncryptor::AesCbcEncryptor(const AesKey& key) : impl_(std::make_unique<Impl>()) {
    const std::array<std::uint8_t, kBlock> iv{};
    impl_->cipher.SetKeyWithIV(key.data(), AesKey::kSize, iv.data(), iv.size());
}

AesCbcEncryptor::~AesCbcEncryptor() = default;

void AesCbcEncryptor::update(const std::uint8_t* data, std::size_t size, Bytes& out) {
    if (impl_->finished) throw std::logic_error("AesCbcEncryptor used after finish()");
    Impl& s = *impl_;
    if (s.partial_size > 0) {
        const std::size_t take = std::min(size, kBlock - s.partial_size);
        std::memcpy(s.partial.data() + s.partial_size, data, take);
        s.partial_size += take;
        data += take;
        size -= take;
        if (s.partial_size < kBlock) return;
        s.encrypt_blocks(s.partial.data(), kBlock, out);
        s.partial_size = 0;
    }
    const std::size_t whole = size - size % kBlock;
    if (whole > 0) s.encrypt_blocks(data, whole, out);
    if (size > whole) {
        std::memcpy(s.partial.data(), data + whole, size - whole);
        s.partial_size = size - whole;
    }
}

void AesCbcEncryptor::finish(Bytes& out) {
    if (impl_->finished) throw std::logic_error("AesCbcEncryptor::finish() called twice");
    Impl& s = *impl_;
    const auto pad = static_cast<std::uint8_t>(kBlock - s.partial_size);  // 1..16
    std::fill(s.partial.begin() + static_cast<std::ptrdiff_t>(s.partial_size), s.partial.end(), pad);
    s.encrypt_blocks(s.partial.data(), kBlock, out);
    s.partial_size = 0;
    s.finished = true;
}

Bytes aes_cbc_encrypt(const AesKey& key, const Bytes& plaintext) {
    AesCbcEncryptor enc(key);
    Bytes out;
    out.reserve(static_cast<std::size_t>(AesCbcEncryptor::ciphertext_size(plaintext.size())));
    enc.update(plaintext.data(), plaintext.size(), out);
    enc.finish(out);
    return out;
}

Bytes aes_cbc_decrypt(const AesKey& key, const Bytes& ciphertext) {
    if (ciphertext.empty() || ciphertext.size() % kBlock != 0) {
        throw CryptoError("AES-CBC ciphertext must be a non-empty multiple of 16 bytes");
    }
    const std::array<std::uint8_t, kBlock> iv{};
    CryptoPP::CBC_Mode<CryptoPP::AES>::Decryption cipher;
    cipher.SetKeyWithIV(key.data(), AesKey::kSize, iv.data(), iv.size());
    Bytes plain(ciphertext.size());
    cipher.ProcessData(plain.data(), ciphertext.data(), ciphertext.size());
    const std::uint8_t pad = plain.back();
    if (pad == 0 || pad > kBlock) throw CryptoError("bad PKCS#7 padding");
    for (std::size_t i = plain.size() - pad; i < plain.size(); ++i) {
        if (plain[i] != pad) throw CryptoError("bad PKCS#7 padding");
    }
    plain.resize(plain.size() - pad);
    return plain;
}

// ---------------------------------------------------------------- Base64

std::string base64_encode(const Bytes& data) {
    const SecretBytes text = base64_encode_secret(SecretBytes(data.data(), data.size()));
    return std::string(reinterpret_cast<const char*>(text.data()), text.size());
}

SecretBytes base64_encode_secret(const SecretBytes& data) {
    // No attached sink: the encoder keeps its output for Get() (no owning raw pointers).
    CryptoPP::Base64Encoder encoder(nullptr, /*insertLineBreaks=*/false);
    encoder.Put(data.data(), data.size());
    encoder.MessageEnd();
    return drain<SecretBytes>(encoder);
}

Bytes base64_decode(std::string_view text) {
    const SecretBytes out = base64_decode_secret(text);
    return Bytes(out.begin(), out.end());
}

SecretBytes base64_decode_secret(std::string_view text) {
    SecretBytes compact(text.size());
    std::size_t used = 0;
    std::size_t padding = 0;
    for (const char c : text) {
        if (is_space(c)) continue;
        if (c == '=') {
            ++padding;
        } else if (!is_base64_char(c) || padding > 0) {
            throw CryptoError("invalid Base64 text");
        }
        compact[used++] = static_cast<CryptoPP::byte>(c);
    }
    if (used % 4 != 0 || padding > 2) throw CryptoError("invalid Base64 length");
    CryptoPP::Base64Decoder decoder;
    decoder.Put(compact.data(), used);
    decoder.MessageEnd();
    return drain<SecretBytes>(decoder);
}

}  // namespace eft::crypto
