#include "cksum.h"

#include <array>

namespace eft {
namespace {

constexpr std::uint32_t kPolynomial = 0x04C11DB7u;

constexpr std::array<std::uint32_t, 256> make_table() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t crc = i << 24;
        for (int bit = 0; bit < 8; ++bit) {
            crc = (crc & 0x80000000u) ? (crc << 1) ^ kPolynomial : (crc << 1);
        }
        table[i] = crc;
    }
    return table;
}

constexpr std::array<std::uint32_t, 256> kTable = make_table();

constexpr std::uint32_t step(std::uint32_t crc, std::uint8_t byte) {
    return (crc << 8) ^ kTable[((crc >> 24) ^ byte) & 0xFFu];
}

}  // namespace

void Cksum::update(const std::uint8_t* data, std::size_t size) noexcept {
    std::uint32_t crc = crc_;
    for (std::size_t i = 0; i < size; ++i) crc = step(crc, data[i]);
    crc_ = crc;
    length_ += size;
}

std::uint32_t Cksum::value() const noexcept {
    std::uint32_t crc = crc_;
    for (std::uint64_t n = length_; n != 0; n >>= 8) {
        crc = step(crc, static_cast<std::uint8_t>(n & 0xFFu));
    }
    return ~crc;
}

std::uint32_t cksum(const std::uint8_t* data, std::size_t size) noexcept {
    Cksum c;
    c.update(data, size);
    return c.value();
}

}  // namespace eft
