// An in-memory version-3 server for the session tests and the whole-exchange fuzz target:
// whole request frames in, reply bytes out, with scripted misbehaviour (1607s, wrong
// CRCs, 1606, a tolerant 901, a replaced reply). No sockets, no threads.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "crypto.h"
#include "wire.h"

namespace testing {

using eft::wire::Bytes;

struct Script {
    std::map<std::uint16_t, int> errors_1607;  // request code -> 1607s first (828: to its last packet)
    int corrupt_crc = 0;                       // this many 1603s carry a wrong cksum; -1: all
    bool answer_901 = false;                   // reply 1604 to 901, as a tolerant server does
    bool deny_reconnect = false;               // 827 -> 1606
    std::optional<std::string> echo_name;      // the file name that 1603s carry
    std::map<std::uint16_t, Bytes> replace;    // request code -> these bytes instead of its reply
};

class ScriptedServer {
public:
    explicit ScriptedServer(Script script, Bytes known_public_der = {});

    // One whole request frame; its replies (if any) are appended to `out`.
    void handle(const Bytes& frame, Bytes& out);

    std::vector<std::uint16_t> requests;        // every request code, in order
    std::map<std::string, Bytes> files;        // name -> plaintext, as last received
    eft::wire::ClientId id{};

private:
    Bytes reply_to(std::uint16_t code, const std::uint8_t* payload, std::size_t size);
    Bytes new_key(std::uint16_t code);
    bool take_1607(std::uint16_t code);  // true (and one less) while the script has 1607s left

    Script script_;
    Bytes public_der_;
    std::optional<eft::crypto::AesKey> key_;
    Bytes cipher_;
    int crc_answers_ = 0;
};

Bytes response(std::uint16_t code, const Bytes& payload = {});

}  // namespace testing
