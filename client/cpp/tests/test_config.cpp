// transfer.info and me.info parsing and writing.
#include <algorithm>
#include <string>

#include "config.h"
#include "crypto.h"
#include "errors.h"
#include "harness.h"
#include "python_key_fixture.h"

using namespace eft::config;

TEST_CASE("config", "endpoints") {
    auto e = parse_endpoint("127.0.0.1:1256");
    CHECK_EQ(e.host, std::string("127.0.0.1"));
    CHECK_EQ(e.port, 1256u);
    e = parse_endpoint(" localhost:65535 ");
    CHECK_EQ(e.host, std::string("localhost"));
    CHECK_EQ(e.port, 65535u);
    e = parse_endpoint("[::1]:80");
    CHECK_EQ(e.host, std::string("::1"));
    CHECK_EQ(e.to_string(), std::string("[::1]:80"));
    for (const char* bad : {"", "host", ":1256", "host:", "host:0", "host:65536", "host:12a", "::1:80",
                            "[::1]80", "h st:1", "host:123456"}) {
        CHECK_THROWS(eft::UsageError, parse_endpoint(bad));
    }
}

TEST_CASE("config", "transfer.info") {
    auto t = parse_transfer_info("127.0.0.1:1234\r\nAlice Smith\r\n/tmp/some file.bin\r\n");
    CHECK_EQ(t.server.port, 1234u);
    CHECK_EQ(t.name, std::string("Alice Smith"));
    CHECK(t.file.has_value());
    CHECK_EQ(t.file->u8string(), std::string("/tmp/some file.bin"));
    t = parse_transfer_info(std::string("host:1\nBob\0\0\0  \n", 16));
    CHECK_EQ(t.name, std::string("Bob"));
    CHECK(!t.file.has_value());
    CHECK_THROWS(eft::UsageError, parse_transfer_info("host:1\n"));
    CHECK_THROWS(eft::UsageError, parse_transfer_info("nonsense\nBob\nf\n"));
    CHECK_THROWS(eft::UsageError, parse_transfer_info("host:1\n" + std::string(101, 'x') + "\nf\n"));
    CHECK_EQ(parse_transfer_info("host:1\n" + std::string(100, 'x') + "\nf\n").name.size(), 100u);
    CHECK_THROWS(eft::UsageError, parse_transfer_info("host:1\nB\x01ob\nf\n"));
    CHECK_THROWS(eft::UsageError, parse_transfer_info("host:1\nBob\nf\ng\n"));
}

TEST_CASE("config", "me.info round trip, 72-column Base64") {
    const auto key = eft::crypto::RsaPrivateKey::generate();
    MeInfo me;
    me.name = "Alice";
    for (std::size_t i = 0; i < me.id.size(); ++i) me.id[i] = static_cast<std::uint8_t>(0xF0 + i % 16);
    me.private_key_der = key.private_key_der();
    const std::string text(text_of(format_me_info(me)));
    const auto lines = split_lines(text);
    CHECK_EQ(lines[0], std::string("Alice"));
    CHECK_EQ(lines[1], std::string("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
    CHECK(lines.size() > 3);
    for (std::size_t i = 2; i + 1 < lines.size(); ++i) CHECK_EQ(lines[i].size(), 72u);
    const MeInfo back = parse_me_info(text);
    CHECK_EQ(back.name, me.name);
    CHECK(back.id == me.id);
    CHECK(back.private_key_der == me.private_key_der);
}

TEST_CASE("config", "me.info written by the Python client (any wrap, CRLF, NUL-padded name)") {
    std::string text = std::string("Alice\0\0\0\r\n", 10) + "00112233445566778899AABBCCDDEEFF\r\n";
    std::string b64 = fixtures::kPythonKeyPkcs8Base64;
    for (auto& c : b64) if (c == '\n') c = '\r';
    std::string crlf;
    for (const char c : b64) crlf += (c == '\r') ? std::string("\r\n") : std::string(1, c);
    const MeInfo me = parse_me_info(text + crlf);
    CHECK_EQ(me.name, std::string("Alice"));
    CHECK_EQ(eft::wire::to_hex(me.id), std::string("00112233445566778899aabbccddeeff"));
    const auto key = eft::crypto::RsaPrivateKey::from_der(me.private_key_der);
    CHECK_EQ(harness::hex(key.public_key_der()), std::string(fixtures::kPythonPublicKeyHex));
    // On one line.
    std::string one_line = fixtures::kPythonKeyPkcs8Base64;
    one_line.erase(std::remove(one_line.begin(), one_line.end(), '\n'), one_line.end());
    CHECK(parse_me_info("Bob\n00112233445566778899aabbccddeeff\n" + one_line + "\n").private_key_der ==
          me.private_key_der);
    // Key only in priv.key.
    CHECK(parse_me_info("Bob\n00112233445566778899aabbccddeeff\n", std::string_view(one_line)).private_key_der ==
          me.private_key_der);
}

TEST_CASE("config", "bad me.info") {
    const std::string key = fixtures::kPythonKeyPkcs8Base64;
    CHECK_THROWS(eft::UsageError, parse_me_info("Alice\n"));
    CHECK_THROWS(eft::UsageError, parse_me_info("Alice\n0011\n" + key));
    CHECK_THROWS(eft::UsageError, parse_me_info("Alice\n0011223344556677889900aabbccddzz\n" + key));
    CHECK_THROWS(eft::UsageError, parse_me_info("Alice\n00112233445566778899aabbccddeeff\n"));
    CHECK_THROWS(eft::UsageError, parse_me_info("Alice\n00112233445566778899aabbccddeeff\nnot base64!\n"));
    CHECK_THROWS(eft::UsageError, parse_me_info("Alice\n00112233445566778899aabbccddeeff\naGVsbG8K\n"));
    CHECK_THROWS(eft::UsageError, parse_me_info("\n00112233445566778899aabbccddeeff\n" + key));
}

TEST_CASE("config", "split_lines strips trailing NUL, space, CR") {
    const auto lines = split_lines(std::string("a \r\nb\0\0\n\nc\t\n\n\n", 14));
    CHECK_EQ(lines.size(), 4u);
    CHECK_EQ(lines[0], std::string("a"));
    CHECK_EQ(lines[1], std::string("b"));
    CHECK_EQ(lines[2], std::string(""));
    CHECK_EQ(lines[3], std::string("c"));
}

#ifndef _WIN32
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace {

MeInfo sample_identity() {
    MeInfo me;
    me.name = "Alice";
    const std::string one_line = [] {
        std::string b64 = fixtures::kPythonKeyPkcs8Base64;
        b64.erase(std::remove(b64.begin(), b64.end(), '\n'), b64.end());
        return b64;
    }();
    return parse_me_info("Alice\n00112233445566778899aabbccddeeff\n" + one_line + "\n");
}

std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

unsigned mode_of(const std::filesystem::path& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return 0xFFFFu;
    return static_cast<unsigned>(st.st_mode & 07777);
}

}  // namespace

TEST_CASE("config", "me.info and priv.key are created 0600 whatever the umask") {
    const harness::TempDir dir;
    const mode_t old = ::umask(022);
    ConfigDir(dir.path).save_identity(sample_identity());
    ::umask(old);
    CHECK_EQ(mode_of(dir.path / kMeInfo), 0600u);
    CHECK_EQ(mode_of(dir.path / kPrivKey), 0600u);
    // Saving again (a new registration) replaces them and they stay private.
    ConfigDir(dir.path).save_identity(sample_identity());
    CHECK_EQ(mode_of(dir.path / kMeInfo), 0600u);
    const auto back = ConfigDir(dir.path).load_me_info();
    CHECK(back.has_value() && back->name == "Alice");
    // No temporary file is left behind.
    std::size_t entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
        (void)e;
        ++entries;
    }
    CHECK_EQ(entries, 2u);
}

TEST_CASE("config", "a new identity sets the old one aside, never overwrites it") {
    const harness::TempDir dir;
    const ConfigDir config(dir.path, dir.path / "servers" / "h_1");
    CHECK(config.save_identity(sample_identity()).empty());  // the directory is made
    const auto first = read_text(dir.path / "servers" / "h_1" / kMeInfo);
    MeInfo other = sample_identity();
    other.id[0] ^= 0xFF;
    const auto moved = config.save_identity(other);
    CHECK_EQ(moved.size(), 2u);
    CHECK(read_text(moved.at(0)) == first);
    CHECK(config.load_me_info()->id == other.id);
    CHECK_EQ(server_directory_name(Endpoint{"::1", 5000}), std::string("__1_5000"));
}

TEST_CASE("config", "saving the identity follows no symlink planted at a temporary name") {
    const harness::TempDir dir;
    const harness::TempDir elsewhere;
    const auto victim = elsewhere.path / "victim";
    { std::ofstream(victim) << "untouched"; }
    for (const char* name : {"me.info.tmp", "priv.key.tmp"}) {
        std::filesystem::create_symlink(victim, dir.path / name);
    }
    ConfigDir(dir.path).save_identity(sample_identity());
    std::ifstream in(victim);
    std::string content;
    std::getline(in, content);
    CHECK_EQ(content, std::string("untouched"));
    CHECK(!std::filesystem::is_symlink(dir.path / kMeInfo));
    CHECK(!std::filesystem::is_symlink(dir.path / kPrivKey));
}
#endif
