// The client's side of a version-3 session as a state machine with no I/O (sans-IO, like
// protocol/eft_protocol/client_session.py): the driver feeds it the bytes the server sends
// and the file's bytes, and does what each Step asks (send frames, save the identity,
// send the file again). Every protocol decision lives here, so tests run whole exchanges
// in memory against scripted replies:
//
// * register (825 -> 1600, 826 -> 1602) or reconnect (827 -> 1605; 1606 -> IdentityError,
//   or register anew when the user said --re-register); a 1600 with the all-zero id and a
//   1602/1605 carrying another client's id are protocol errors;
// * 1607: print the notice and send the same request again, up to 3 more times (for a
//   file: the whole file), then ServerError;
// * after the last packet, 1603: equal cksum -> 900 -> 1604; different -> 901 and the
//   whole file again, up to 3 times, then 902 -> 1604 -> IntegrityError. 901 has no
//   reply, but a tolerant server may send 1604 for it: skipped while waiting for 1603.
//
// Errors are thrown as eft::Error (exit codes); messages go to the Reporter.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "console.h"
#include "crypto.h"
#include "file_packets.h"
#include "response_parser.h"
#include "transfer.h"
#include "wire.h"

namespace eft {

struct Outgoing {
    wire::Bytes frame;
    std::string what;  // "825 (register)", for messages
};

// What the driver must do next, in this order.
struct Step {
    std::optional<config::MeInfo> save_identity;  // write me.info and priv.key first
    std::vector<Outgoing> send;                   // then send these frames
    bool send_file = false;                        // then send the current file (again)
    bool file_done = false;                        // the server confirmed the current file
};

class ClientSession {
public:
    using KeyFactory = std::function<crypto::RsaPrivateKey()>;

    // `name` registers; `me` (me.info), when present, reconnects first, under its own name.
    // `new_key` makes the key pair at registration (tests and fuzzers pass a fixed one).
    // A 1606 to a client that has an identity is an IdentityError (exit 9): version 3
    // cannot authenticate it, and registering anew would replace the identity on the word
    // of anyone on the path (EFT-19). With `re_register` (the user's --re-register) the
    // session registers anew instead.
    ClientSession(std::string name, std::optional<config::MeInfo> me, Reporter& reporter,
                  KeyFactory new_key = &crypto::RsaPrivateKey::generate, bool re_register = false);

    Step start();

    // Bytes from the server, split or coalesced in any way.
    void feed(const std::uint8_t* data, std::size_t size) { parser_.feed(data, size); }
    // Handles the next buffered reply, if a whole one is in.
    std::optional<Step> next();
    Step receive(const Reply& reply);

    bool ready() const noexcept { return state_ == State::kReady; }
    // What a reply is awaited for ("the reply to 825 (register)"), for messages.
    const std::string& waiting_for() const noexcept { return waiting_for_; }

    // Sending a file: begin_file in the ready state (or after a Step with send_file), then
    // the file's bytes in order, then end_file; frames go to `sink` as they are made.
    void begin_file(const TransferPlan& plan);
    void file_data(const std::uint8_t* data, std::size_t size, const FrameSink& sink);
    void end_file(const FrameSink& sink);

private:
    enum class State { kStart, kRegistering, kSendingKey, kReconnecting, kReady, kSending, kAwaitingCrc,
                       kAwaitingAck };

    Step request(wire::Bytes frame, std::string what, State next);
    Step server_error(const Reply& reply);
    Step on_reconnect_reply(const Reply& reply);
    Step on_register_reply(const Reply& reply);
    Step on_key_reply(const Reply& reply);
    Step on_crc_reply(const Reply& reply);
    Step on_ack_reply(const Reply& reply);
    Step start_registering();
    crypto::AesKey unwrap_key(const crypto::RsaPrivateKey& key, const Reply& reply, const char* code);
    [[noreturn]] void unexpected(const Reply& reply) const;

    std::string name_;
    std::optional<config::MeInfo> me_;
    Reporter& reporter_;
    KeyFactory new_key_;
    bool re_register_ = false;
    ResponseParser parser_;
    State state_ = State::kStart;

    wire::ClientId id_{};
    std::optional<crypto::RsaPrivateKey> key_;  // from registration until 1602
    std::optional<crypto::AesKey> aes_key_;

    Outgoing last_request_;  // repeated on 1607
    int server_errors_ = 0;  // 1607s to the last request (or file attempt) so far
    std::string waiting_for_;
    std::string unexpected_context_;  // "to 825 (register)", "after the last packet of f"

    // The current file.
    const TransferPlan* plan_ = nullptr;
    std::optional<FilePackets> packets_;
    int attempt_ = 0;                // CRC attempts at the current file (1-4)
    bool resend_after_error_ = false;  // the next begin_file repeats an attempt after 1607
    bool gave_up_ = false;           // 902 sent
    std::uint32_t cksum_ = 0;
    int unanswered_901_ = 0;  // 901s a tolerant server may still answer with 1604
};

}  // namespace eft
