// Spec section 9: cksum vectors.
#include <vector>

#include "cksum.h"
#include "harness.h"

namespace {
std::uint32_t of(const std::string& s) {
    const auto b = harness::bytes(s);
    return eft::cksum(b.data(), b.size());
}
}  // namespace

TEST_CASE("cksum", "empty input") { CHECK_EQ(of(""), 4294967295u); }
TEST_CASE("cksum", "a") { CHECK_EQ(of("a"), 1220704766u); }
TEST_CASE("cksum", "123456789") { CHECK_EQ(of("123456789"), 930766865u); }
TEST_CASE("cksum", "hello world newline") { CHECK_EQ(of("hello world\n"), 3733384285u); }

TEST_CASE("cksum", "one million zero bytes") {
    const std::vector<std::uint8_t> zeros(1000000, 0);
    CHECK_EQ(eft::cksum(zeros.data(), zeros.size()), 1345294785u);
    CHECK_EQ(eft::cksum(zeros.data(), zeros.size()), 0x502F91C1u);
}

TEST_CASE("cksum", "incremental equals one shot") {
    std::vector<std::uint8_t> data(100000);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 7 + 3);
    const std::uint32_t whole = eft::cksum(data.data(), data.size());
    for (const std::size_t step : {std::size_t{1}, std::size_t{15}, std::size_t{4096}, std::size_t{65536}}) {
        eft::Cksum c;
        for (std::size_t at = 0; at < data.size(); at += step) {
            c.update(data.data() + at, std::min(step, data.size() - at));
        }
        CHECK_EQ(c.value(), whole);
        CHECK_EQ(c.length(), data.size());
    }
}

TEST_CASE("cksum", "value does not change the state") {
    eft::Cksum c;
    const auto a = harness::bytes("hello ");
    const auto b = harness::bytes("world\n");
    c.update(a.data(), a.size());
    (void)c.value();
    c.update(b.data(), b.size());
    CHECK_EQ(c.value(), 3733384285u);
}
