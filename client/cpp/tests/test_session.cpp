// The session logic (client_session.h) run in memory against a scripted server: the
// retry, 901/902 and CRC decisions, with replies split into small pieces or coalesced.
#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "client_session.h"
#include "errors.h"
#include "harness.h"
#include "python_key_fixture.h"
#include "response_parser.h"
#include "scripted_server.h"

using eft::ClientSession;
using eft::Step;
using eft::wire::Bytes;
using testing::Script;
using testing::ScriptedServer;

namespace {

struct RecordingReporter final : eft::Reporter {
    std::vector<std::string> infos;
    std::vector<std::string> warnings;
    int server_errors = 0;
    void info(const std::string& line) override { infos.push_back(line); }
    void warn(const std::string& line) override { warnings.push_back(line); }
    void server_error() override { ++server_errors; }
};

eft::crypto::RsaPrivateKey fixture_key() {
    return eft::crypto::RsaPrivateKey::from_der(eft::crypto::base64_decode(fixtures::kPythonKeyPkcs8Base64));
}

eft::config::MeInfo fixture_identity() {
    eft::wire::ClientId id{};
    for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<std::uint8_t>(0xA0 + i);
    return eft::config::MeInfo("Alice", id, fixture_key().private_key_der());
}

Bytes file_content(std::size_t size) {
    Bytes data(size);
    for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::uint8_t>(i * 131 + 7);
    return data;
}

// A client and a server wired together in memory. The driver loop of driver.cpp, with
// the server's replies fed to the session `chunk` bytes at a time (0: all that is
// pending at once, so replies sent back to back arrive coalesced).
struct Exchange {
    RecordingReporter reporter;
    ScriptedServer server;
    ClientSession session;
    std::size_t chunk;
    Bytes pending;  // reply bytes the client has not read yet
    std::vector<eft::config::MeInfo> saved;

    Exchange(Script script, std::size_t chunk_size, std::optional<eft::config::MeInfo> me = std::nullopt,
             bool re_register = false)
        : server(std::move(script), me ? fixture_key().public_key_der() : Bytes{}),
          session("Alice", std::move(me), reporter, &fixture_key, re_register),
          chunk(chunk_size) {}

    void perform(Step step) {
        if (step.save_identity) saved.push_back(std::move(*step.save_identity));
        for (const auto& out : step.send) server.handle(out.frame, pending);
    }

    Step await() {
        for (;;) {
            if (auto step = session.next()) return std::move(*step);
            if (pending.empty()) throw std::runtime_error("the client waits for a reply that never comes");
            const std::size_t n = chunk == 0 ? pending.size() : std::min(chunk, pending.size());
            session.feed(pending.data(), n);
            pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
        }
    }

    void connect() {
        perform(session.start());
        while (!session.ready()) perform(await());
    }

    void send_file(const eft::TransferPlan& plan, const Bytes& data) {
        const eft::FrameSink sink = [&](const Bytes& frame, std::uint16_t) { server.handle(frame, pending); };
        for (;;) {
            session.begin_file(plan);
            for (std::size_t at = 0; at < data.size(); at += 7) {  // odd pieces on purpose
                session.file_data(data.data() + at, std::min<std::size_t>(7, data.size() - at), sink);
            }
            session.end_file(sink);
            for (;;) {
                Step step = await();
                const bool again = step.send_file;
                const bool done = step.file_done;
                perform(std::move(step));
                if (done) return;
                if (again) break;
            }
        }
    }

    // Registers or reconnects, then sends a 40-byte file in three 16-byte packets.
    void run() {
        connect();
        send_file(plan(), content());
        CHECK(pending.empty());
    }

    static eft::TransferPlan plan() {
        eft::TransferPlan p = eft::plan_for_size(40, 16);  // 48 bytes of ciphertext: 3 packets
        p.file_name = "f.bin";
        p.path = "f.bin";
        return p;
    }
    static Bytes content() { return file_content(40); }
};

std::vector<std::uint16_t> codes(std::initializer_list<std::uint16_t> list) { return list; }
const std::vector<std::uint16_t> kRequests = {825, 826, 828, 900};

// The requests of one attempt at the 3-packet file.
void add_file(std::vector<std::uint16_t>& v) { v.insert(v.end(), {828, 828, 828}); }

std::string joined(const std::vector<std::uint16_t>& v) {
    std::string s;
    for (const auto c : v) s += std::to_string(c) + " ";
    return s;
}

#define CHECK_REQUESTS(exchange, expected) CHECK_EQ(joined((exchange).server.requests), joined(expected))

}  // namespace

TEST_CASE("session", "register and send; replies split in 1 and 5 bytes or whole") {
    for (const std::size_t chunk : {std::size_t{1}, std::size_t{5}, std::size_t{0}}) {
        Exchange x(Script{}, chunk);
        x.run();
        auto expected = codes({825, 826});
        add_file(expected);
        expected.push_back(900);
        CHECK_REQUESTS(x, expected);
        CHECK(x.server.files["f.bin"] == Exchange::content());
        CHECK_EQ(x.saved.size(), 1u);
        CHECK_EQ(x.saved.at(0).name, std::string("Alice"));
        CHECK(x.saved.at(0).id == x.server.id);
        CHECK_EQ(x.reporter.server_errors, 0);
    }
}

TEST_CASE("session", "1607 once to each request: the same request (or whole file) again") {
    for (const std::uint16_t code : kRequests) {
        Script script;
        script.errors_1607[code] = 1;
        Exchange x(script, 3);
        x.run();
        CHECK_EQ(x.reporter.server_errors, 1);
        std::vector<std::uint16_t> expected;
        for (const std::uint16_t c : kRequests) {
            const int times = c == code ? 2 : 1;
            for (int i = 0; i < times; ++i) {
                if (c == 828) add_file(expected);
                else expected.push_back(c);
            }
        }
        CHECK_REQUESTS(x, expected);
        CHECK(x.server.files["f.bin"] == Exchange::content());
    }
}

TEST_CASE("session", "1607 four times: ServerError after 3 retries") {
    for (const std::uint16_t code : kRequests) {
        Script script;
        script.errors_1607[code] = 4;
        Exchange x(script, 0);
        CHECK_THROWS(eft::ServerError, x.run());
        CHECK_EQ(x.reporter.server_errors, 4);
        const auto sent = std::count(x.server.requests.begin(), x.server.requests.end(), code);
        CHECK_EQ(sent, code == 828 ? 12 : 4);  // the file: 4 times 3 packets
    }
}

TEST_CASE("session", "wrong CRC once: 901, the whole file again, then 900") {
    Script script;
    script.corrupt_crc = 1;
    Exchange x(script, 1);
    x.run();
    auto expected = codes({825, 826});
    add_file(expected);
    expected.push_back(901);
    add_file(expected);
    expected.push_back(900);
    CHECK_REQUESTS(x, expected);
    CHECK_EQ(x.reporter.warnings.size(), 1u);
    CHECK(x.reporter.warnings.at(0).find("CRC mismatch on attempt 1 of 4") == 0);
}

TEST_CASE("session", "wrong CRC four times: 902, then IntegrityError") {
    Script script;
    script.corrupt_crc = -1;
    Exchange x(script, 0);
    CHECK_THROWS(eft::IntegrityError, x.run());
    auto expected = codes({825, 826});
    for (int attempt = 1; attempt <= 4; ++attempt) {
        add_file(expected);
        expected.push_back(attempt < 4 ? 901 : 902);
    }
    CHECK_REQUESTS(x, expected);
}

TEST_CASE("session", "a 1607 to the file does not use up a CRC attempt") {
    Script script;
    script.corrupt_crc = 3;
    script.errors_1607[828] = 3;
    Exchange x(script, 2);
    x.run();  // 3 wrong CRCs and 3 1607s: still within the rules
    CHECK_EQ(x.reporter.server_errors, 3);
    CHECK_EQ(std::count(x.server.requests.begin(), x.server.requests.end(), 901), 3);
    CHECK_EQ(x.server.requests.back(), 900);
}

TEST_CASE("session", "1606 on reconnect: IdentityError, nothing saved (EFT-19)") {
    Script script;
    script.deny_reconnect = true;
    Exchange x(script, 4, fixture_identity());
    CHECK_THROWS(eft::IdentityError, x.run());
    CHECK_REQUESTS(x, codes({827}));
    CHECK(x.saved.empty());
}

TEST_CASE("session", "1606 on reconnect with --re-register: registers anew and saves the new identity") {
    Script script;
    script.deny_reconnect = true;
    Exchange x(script, 4, fixture_identity(), true);
    x.run();
    auto expected = codes({827, 825, 826});
    add_file(expected);
    expected.push_back(900);
    CHECK_REQUESTS(x, expected);
    CHECK_EQ(x.saved.size(), 1u);
}

TEST_CASE("session", "a 1600 with the all-zero id is a protocol error, nothing saved") {
    Script script;
    script.replace[825] = testing::response(1600, Bytes(16, 0));
    Exchange x(script, 0);
    CHECK_THROWS(eft::ProtocolError, x.run());
    CHECK(x.saved.empty());
}

TEST_CASE("session", "a 1602 or 1605 carrying another client's id is a protocol error") {
    Bytes delivery(16 + 128, 0x5A);  // another id, then a key wrapped for someone
    for (const int request : {826, 827}) {
        Script script;
        script.replace[static_cast<std::uint16_t>(request)] = testing::response(request == 826 ? 1602 : 1605, delivery);
        Exchange x(script, 0, request == 827 ? std::optional(fixture_identity()) : std::nullopt);
        CHECK_THROWS(eft::ProtocolError, x.run());
    }
}

TEST_CASE("session", "1605 on reconnect: no registration, nothing saved") {
    Exchange x(Script{}, 0, fixture_identity());
    x.run();
    auto expected = codes({827});
    add_file(expected);
    expected.push_back(900);
    CHECK_REQUESTS(x, expected);
    CHECK(x.saved.empty());
    CHECK(x.server.files["f.bin"] == Exchange::content());
}

TEST_CASE("session", "a tolerant server's 1604s for 901 arrive coalesced with the 1603 and are skipped") {
    Script script;
    script.answer_901 = true;
    script.corrupt_crc = 3;
    Exchange x(script, 0);  // 1604 and 1603 reach the session in one piece
    x.run();
    CHECK_EQ(std::count(x.server.requests.begin(), x.server.requests.end(), 901), 3);
    CHECK_EQ(x.server.requests.back(), 900);
}

TEST_CASE("session", "a 1604 where the 1603 belongs is a protocol error") {
    Script script;
    script.replace[828] = testing::response(1604);
    Exchange x(script, 0);
    try {
        x.run();
        CHECK(false);
    } catch (const eft::ProtocolError& e) {
        CHECK(std::string(e.what()).find("unexpected response 1604") == 0);
    }
}

TEST_CASE("session", "the file name a 1603 echoes is reported escaped") {
    Script script;
    script.echo_name = "\x1b]0;owned\x07\x1b[2J";
    Exchange x(script, 0);
    x.run();
    CHECK_EQ(x.reporter.warnings.size(), 1u);
    CHECK_EQ(x.reporter.warnings.at(0), std::string("1603 names the file '\\x1b]0;owned\\x07\\x1b[2J'"));
}

TEST_CASE("parser", "replies split byte by byte and coalesced") {
    Bytes stream = testing::response(1604);
    const Bytes second = testing::response(1600, Bytes(16, 0x11));
    stream.insert(stream.end(), second.begin(), second.end());
    eft::ResponseParser bytewise;
    std::vector<eft::Reply> got;
    for (const auto b : stream) {
        bytewise.feed(&b, 1);
        while (auto r = bytewise.next()) got.push_back(std::move(*r));
    }
    CHECK_EQ(got.size(), 2u);
    CHECK(got.at(1).code == eft::wire::Response::kRegistered && got.at(1).payload == Bytes(16, 0x11));
    eft::ResponseParser whole;
    whole.feed(stream.data(), stream.size());
    CHECK(whole.next()->code == eft::wire::Response::kAck);
    CHECK(whole.next()->payload.size() == 16u);
    CHECK(!whole.next());
    CHECK_EQ(whole.buffered(), 0u);
}

TEST_CASE("parser", "a bad header is refused before its payload arrives") {
    Bytes header = testing::response(1600);
    header[3] = header[4] = header[5] = header[6] = 0xFF;  // a 4 GiB payload
    eft::ResponseParser p;
    p.feed(header.data(), 6);
    CHECK(!p.next());
    p.feed(header.data() + 6, 1);
    CHECK_THROWS(eft::ProtocolError, p.next());
    eft::ResponseParser version;
    Bytes v2 = testing::response(1604);
    v2[0] = 2;
    version.feed(v2.data(), v2.size());
    CHECK_THROWS(eft::ProtocolError, version.next());
}
