#include "cli.h"
#include "errors.h"
#include "harness.h"

using eft::parse_cli;

TEST_CASE("cli", "files and flags") {
    const auto o = parse_cli({"a.txt", "--server", "127.0.0.1:1256", "b.bin", "--name=Bob", "--dir", "cfg",
                              "--packet-size", "1024", "--timeout=5"});
    CHECK_EQ(o.files.size(), 2u);
    CHECK_EQ(o.files[1], std::string("b.bin"));
    CHECK_EQ(*o.server, std::string("127.0.0.1:1256"));
    CHECK_EQ(*o.name, std::string("Bob"));
    CHECK_EQ(*o.dir, std::string("cfg"));
    CHECK_EQ(*o.packet_size, 1024u);
    CHECK_EQ(o.timeout_seconds, 5u);
}

TEST_CASE("cli", "--re-register is a switch, off by default") {
    CHECK(!parse_cli({"a.txt"}).re_register);
    const auto o = parse_cli({"a.txt", "--re-register"});
    CHECK(o.re_register);
    CHECK_EQ(o.files.size(), 1u);
}

TEST_CASE("cli", "double dash ends the options") {
    const auto o = parse_cli({"--", "--server"});
    CHECK_EQ(o.files.size(), 1u);
    CHECK(!o.server);
}

TEST_CASE("cli", "bad flags are usage errors") {
    CHECK_THROWS(eft::UsageError, parse_cli({"--bogus"}));
    CHECK_THROWS(eft::UsageError, parse_cli({"--server"}));
    CHECK_THROWS(eft::UsageError, parse_cli({"--packet-size", "0"}));
    CHECK_THROWS(eft::UsageError, parse_cli({"--packet-size", "12x"}));
    CHECK_THROWS(eft::UsageError, parse_cli({"--packet-size", "99999999999"}));
    CHECK_THROWS(eft::UsageError, parse_cli({"--timeout", "-1"}));
    CHECK_THROWS(eft::UsageError, parse_cli({"--dir="}));
    CHECK(parse_cli({"-h"}).help);
}
