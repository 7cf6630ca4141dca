#include "errors.h"
#include "harness.h"
#include "transfer.h"

using eft::plan_for_size;

TEST_CASE("plan", "empty file is one 16-byte packet") {
    const auto p = plan_for_size(0, 65536);
    CHECK_EQ(p.content_size, 16u);
    CHECK_EQ(p.total_packets, 1u);
    CHECK(!p.packet_size_grown);
}

TEST_CASE("plan", "content size and packet count") {
    auto p = plan_for_size(12, 65536);
    CHECK_EQ(p.content_size, 16u);
    p = plan_for_size(16, 65536);
    CHECK_EQ(p.content_size, 32u);
    p = plan_for_size(100000, 16);
    CHECK_EQ(p.content_size, 100016u);
    CHECK_EQ(p.total_packets, 6251u);
    p = plan_for_size(65535, 65536);
    CHECK_EQ(p.total_packets, 1u);
    p = plan_for_size(65536, 65536);  // content 65552 -> 2 packets
    CHECK_EQ(p.total_packets, 2u);
    p = plan_for_size(1000, 7);       // any slice size works
    CHECK_EQ(p.total_packets, 144u);
}

TEST_CASE("plan", "packet size grows to stay within 65535 packets") {
    const auto p = plan_for_size(65535ull * 16, 16);  // content 65536*16 -> would be 65536 packets
    CHECK(p.packet_size_grown);
    CHECK(p.total_packets <= 65535u);
    CHECK_EQ(p.packet_size % 16, 0u);
    CHECK(static_cast<std::uint64_t>(p.packet_size) * p.total_packets >= p.content_size);
    const auto big = plan_for_size(eft::kMaxFileSize, 65536);
    CHECK_EQ(big.content_size, 0xFFFFFFF0u);
    CHECK(big.total_packets <= 65535u);
    CHECK(static_cast<std::uint64_t>(big.packet_size) * big.total_packets >= big.content_size);
}

TEST_CASE("plan", "too large or bad packet size") {
    CHECK_THROWS(eft::UsageError, plan_for_size(eft::kMaxFileSize + 1, 65536));
    CHECK_THROWS(eft::UsageError, plan_for_size(10, 0));
    CHECK_THROWS(eft::UsageError, plan_for_size(10, eft::kMaxPacketSize + 1));
}

#include <fstream>

// The Python client's rule (client/eft_client/transfer.py): version 3 carries file names of
// 1-254 printable ASCII characters; anything else is refused before connecting (exit 2).
TEST_CASE("plan", "file names that are not printable ASCII are refused before connecting") {
    const harness::TempDir dir;
    for (const char* bad : {"r\xc3\xa9sum\xc3\xa9.bin", "tab\there", "esc\x1b[2J.txt", "del\x7f"}) {
        const auto path = dir.path / std::filesystem::u8path(bad);
        { std::ofstream(path) << "x"; }
        CHECK_THROWS(eft::UsageError, eft::plan_transfer(path, 65536));
    }
    const auto fine = dir.path / "plain name~!.txt";
    { std::ofstream(fine) << "x"; }
    CHECK_EQ(eft::plan_transfer(fine, 65536).file_name, std::string("plain name~!.txt"));
    const auto longest = dir.path / std::string(254, 'a');
    { std::ofstream(longest) << "x"; }
    CHECK_EQ(eft::plan_transfer(longest, 65536).file_name.size(), 254u);
}
