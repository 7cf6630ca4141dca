// Spec section 9: AES-256-CBC vectors (key 0x00..0x1F, zero IV, PKCS#7), streamed in
// pieces of every size.
#include <string>
#include <vector>

#include "crypto.h"
#include "harness.h"

namespace {

eft::crypto::AesKey vector_key() {
    std::vector<std::uint8_t> k(32);
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(i);
    return eft::crypto::AesKey(k.data(), k.size());
}

std::string streamed(const std::vector<std::uint8_t>& plain, std::size_t step) {
    eft::crypto::AesCbcEncryptor enc(vector_key());
    std::vector<std::uint8_t> out;
    for (std::size_t at = 0; at < plain.size(); at += step) {
        enc.update(plain.data() + at, std::min(step, plain.size() - at), out);
    }
    enc.finish(out);
    return harness::hex(out);
}

}  // namespace

TEST_CASE("aes", "empty plaintext") {
    CHECK_EQ(harness::hex(eft::crypto::aes_cbc_encrypt(vector_key(), {})), std::string("9f3b7504926f8bd36e3118e903a4cd4a"));
}

TEST_CASE("aes", "hello world") {
    CHECK_EQ(harness::hex(eft::crypto::aes_cbc_encrypt(vector_key(), harness::bytes("hello world\n"))),
             std::string("0b2c878e3b34b315443e0f44b3091802"));
}

TEST_CASE("aes", "sixteen A") {
    const auto plain = harness::bytes(std::string(16, 'A'));
    const std::string expected = "72ada3664473c418c917a496fcc37066ab5fa98b9d6a251e66dd7a7f9f21714a";
    CHECK_EQ(harness::hex(eft::crypto::aes_cbc_encrypt(vector_key(), plain)), expected);
    for (std::size_t step = 1; step <= 17; ++step) CHECK_EQ(streamed(plain, step), expected);
}

TEST_CASE("aes", "streaming in any piece size equals one shot, and decrypts back") {
    std::vector<std::uint8_t> plain(1000);
    for (std::size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<std::uint8_t>(i ^ 0x5A);
    for (const std::size_t len : {std::size_t{0}, std::size_t{1}, std::size_t{15}, std::size_t{16},
                                  std::size_t{17}, std::size_t{999}, std::size_t{1000}}) {
        const std::vector<std::uint8_t> p(plain.begin(), plain.begin() + static_cast<std::ptrdiff_t>(len));
        const auto whole = eft::crypto::aes_cbc_encrypt(vector_key(), p);
        CHECK_EQ(whole.size(), eft::crypto::AesCbcEncryptor::ciphertext_size(len));
        for (const std::size_t step : {std::size_t{1}, std::size_t{7}, std::size_t{16}, std::size_t{33}, std::size_t{4096}}) {
            CHECK_EQ(streamed(p, step), harness::hex(whole));
        }
        CHECK(eft::crypto::aes_cbc_decrypt(vector_key(), whole) == p);
    }
}

TEST_CASE("aes", "bad keys and bad ciphertext are refused") {
    const std::vector<std::uint8_t> short_key(16);
    CHECK_THROWS(eft::crypto::CryptoError, eft::crypto::AesKey(short_key.data(), short_key.size()));
    CHECK_THROWS(eft::crypto::CryptoError, eft::crypto::aes_cbc_decrypt(vector_key(), std::vector<std::uint8_t>(15)));
    // Decrypting garbage gives a bad pad (with overwhelming probability for this input).
    auto ct = eft::crypto::aes_cbc_encrypt(vector_key(), harness::bytes("hello world\n"));
    ct.back() ^= 0x01;
    CHECK_THROWS(eft::crypto::CryptoError, eft::crypto::aes_cbc_decrypt(vector_key(), ct));
}
