// POSIX cksum (CRC-32/CKSUM): polynomial 0x04C11DB7, MSB first, initial value 0, the
// data length appended little-end first, complemented. Incremental, so a file can be
// fed chunk by chunk while it is being encrypted.
#pragma once

#include <cstddef>
#include <cstdint>

namespace eft {

class Cksum {
public:
    void update(const std::uint8_t* data, std::size_t size) noexcept;
    // The cksum of everything fed so far (does not change the state).
    std::uint32_t value() const noexcept;
    std::uint64_t length() const noexcept { return length_; }

private:
    std::uint32_t crc_ = 0;
    std::uint64_t length_ = 0;
};

std::uint32_t cksum(const std::uint8_t* data, std::size_t size) noexcept;

}  // namespace eft
