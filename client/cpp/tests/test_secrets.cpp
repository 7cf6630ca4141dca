// Key material is kept in buffers that wipe themselves (CryptoPP::SecByteBlock) and in
// types that cannot be copied, so no stray copy outlives its use (issue 29). These are
// compile-time checks: before the fix this file did not compile.
#include <type_traits>
#include <utility>

#include "config.h"
#include "crypto.h"
#include "harness.h"

namespace {

using eft::crypto::AesKey;
using eft::crypto::RsaPrivateKey;
using eft::crypto::SecretBytes;

static_assert(std::is_same_v<SecretBytes, CryptoPP::SecByteBlock>);
static_assert(!std::is_copy_constructible_v<AesKey> && !std::is_copy_assignable_v<AesKey>);
static_assert(std::is_nothrow_move_constructible_v<AesKey>);
static_assert(!std::is_copy_constructible_v<RsaPrivateKey>);
static_assert(std::is_same_v<decltype(std::declval<const RsaPrivateKey&>().private_key_der()), SecretBytes>);
static_assert(std::is_same_v<decltype(std::declval<const RsaPrivateKey&>().decrypt(nullptr, 0)), SecretBytes>);
static_assert(std::is_same_v<decltype(eft::config::MeInfo::private_key_der), SecretBytes>);
static_assert(!std::is_copy_constructible_v<eft::config::MeInfo>);
static_assert(std::is_same_v<decltype(eft::config::format_me_info(std::declval<const eft::config::MeInfo&>())),
                             SecretBytes>);

}  // namespace

TEST_CASE("secrets", "an AES key moves, and the moved-from key holds nothing") {
    std::uint8_t raw[32];
    for (std::size_t i = 0; i < sizeof raw; ++i) raw[i] = static_cast<std::uint8_t>(i);
    AesKey a(raw, sizeof raw);
    const AesKey b(std::move(a));
    CHECK_EQ(b.data()[31], 31u);
    CHECK(a.empty());  // NOLINT(bugprone-use-after-move): the point of the test
}
