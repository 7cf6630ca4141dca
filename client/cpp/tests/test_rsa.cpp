// RSA-1024 e=17: key generation, the 160-byte public DER, PKCS#8 round trip, OAEP
// interoperability with PyCryptodome.
#include <string>

#include "config.h"
#include "crypto.h"
#include "harness.h"
#include "python_key_fixture.h"

using eft::crypto::RsaPrivateKey;

TEST_CASE("rsa", "generated key: 160-byte SPKI with e=17, PKCS#8 round trip") {
    const RsaPrivateKey key = RsaPrivateKey::generate();
    const auto pub = key.public_key_der();
    CHECK_EQ(pub.size(), 160u);
    const std::string h = harness::hex(pub);
    CHECK_EQ(h.substr(0, 58), std::string("30819d300d06092a864886f70d010101050003818b0030818702818100"));
    CHECK_EQ(h.substr(h.size() - 6), std::string("020111"));

    const auto der = key.private_key_der();
    const std::string b64(eft::config::text_of(eft::crypto::base64_encode_secret(der)));
    const RsaPrivateKey again = RsaPrivateKey::from_der(eft::crypto::base64_decode(b64));
    CHECK(again.public_key_der() == pub);
    CHECK(again.private_key_der() == der);
}

TEST_CASE("rsa", "OAEP round trip with our own key") {
    const RsaPrivateKey key = RsaPrivateKey::generate();
    std::vector<std::uint8_t> aes(32);
    for (std::size_t i = 0; i < aes.size(); ++i) aes[i] = static_cast<std::uint8_t>(0xA0 + i);
    const auto ct = eft::crypto::rsa_encrypt(key.public_key_der(), aes);
    CHECK_EQ(ct.size(), 128u);
    CHECK(key.decrypt(ct.data(), ct.size()) == eft::crypto::SecretBytes(aes.data(), aes.size()));
    auto bad = ct;
    bad[5] ^= 0x40;
    CHECK_THROWS(eft::crypto::CryptoError, key.decrypt(bad.data(), bad.size()));
    CHECK_THROWS(eft::crypto::CryptoError, key.decrypt(ct.data(), 127));
}

TEST_CASE("rsa", "a PyCryptodome key loads (PKCS#8 and PKCS#1) and decrypts its OAEP") {
    const RsaPrivateKey k8 = RsaPrivateKey::from_der(eft::crypto::base64_decode(fixtures::kPythonKeyPkcs8Base64));
    CHECK_EQ(harness::hex(k8.public_key_der()), std::string(fixtures::kPythonPublicKeyHex));
    const RsaPrivateKey k1 = RsaPrivateKey::from_der(eft::crypto::base64_decode(fixtures::kPythonKeyPkcs1Base64));
    CHECK_EQ(harness::hex(k1.public_key_der()), std::string(fixtures::kPythonPublicKeyHex));
    const auto ct = harness::unhex(fixtures::kPythonOaepOfCountingKeyHex);
    const auto plain = k8.decrypt(ct.data(), ct.size());
    CHECK_EQ(harness::hex({plain.begin(), plain.end()}), std::string("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"));
}

TEST_CASE("rsa", "garbage is not a key") {
    CHECK_THROWS(eft::crypto::CryptoError, RsaPrivateKey::from_der(eft::crypto::Bytes{}));
    CHECK_THROWS(eft::crypto::CryptoError, RsaPrivateKey::from_der(harness::bytes("not a key at all")));
    auto der = eft::crypto::base64_decode(fixtures::kPythonKeyPkcs8Base64);
    der.resize(der.size() / 2);
    CHECK_THROWS(eft::crypto::CryptoError, RsaPrivateKey::from_der(der));
    der = eft::crypto::base64_decode(fixtures::kPythonKeyPkcs8Base64);
    der.push_back(0);  // trailing junk
    CHECK_THROWS(eft::crypto::CryptoError, RsaPrivateKey::from_der(der));
}

TEST_CASE("rsa", "base64") {
    CHECK_EQ(eft::crypto::base64_encode(harness::bytes("hello world\n")), std::string("aGVsbG8gd29ybGQK"));
    CHECK(eft::crypto::base64_decode("aGVs bG8g\r\nd29y\tbGQK") == harness::bytes("hello world\n"));
    CHECK(eft::crypto::base64_decode("").empty());
    CHECK(eft::crypto::base64_decode("YQ==") == harness::bytes("a"));
    CHECK_THROWS(eft::crypto::CryptoError, eft::crypto::base64_decode("YQ="));
    CHECK_THROWS(eft::crypto::CryptoError, eft::crypto::base64_decode("Y*Q="));
    CHECK_THROWS(eft::crypto::CryptoError, eft::crypto::base64_decode("YQ==YQ=="));
}
