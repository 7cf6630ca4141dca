#include "client_session.h"

#include <utility>

#include "errors.h"

namespace eft {
namespace {

constexpr int kServerErrorRetries = 3;  // 1607: the request once, then 3 more times

}  // namespace

ClientSession::ClientSession(std::string name, std::optional<config::MeInfo> me, Reporter& reporter,
                             KeyFactory new_key, bool re_register)
    : name_(std::move(name)),
      me_(std::move(me)),
      reporter_(reporter),
      new_key_(std::move(new_key)),
      re_register_(re_register) {}

// ---------------------------------------------------------------- requests and 1607

Step ClientSession::request(wire::Bytes frame, std::string what, State next) {
    waiting_for_ = "the reply to " + what;
    unexpected_context_ = "to " + what;
    last_request_ = Outgoing{frame, what};
    server_errors_ = 0;
    state_ = next;
    Step step;
    step.send.push_back(Outgoing{std::move(frame), std::move(what)});
    return step;
}

Step ClientSession::server_error(const Reply& reply) {
    wire::check_optional_id_payload(reply.code, reply.payload);
    reporter_.server_error();
    ++server_errors_;
    const std::string what = state_ == State::kAwaitingCrc ? "the file " + plan_->file_name : last_request_.what;
    if (server_errors_ > kServerErrorRetries) {
        throw ServerError("the server answered " + what + " with 1607 (general server error) " +
                          std::to_string(server_errors_) + " times in a row; giving up after " +
                          std::to_string(kServerErrorRetries) + " retries");
    }
    reporter_.info("retrying " + what + " (retry " + std::to_string(server_errors_) + " of " +
                   std::to_string(kServerErrorRetries) + ")");
    Step step;
    if (state_ == State::kAwaitingCrc) {
        resend_after_error_ = true;  // the same attempt again, not a new CRC attempt
        state_ = State::kReady;
        step.send_file = true;
    } else {
        step.send.push_back(last_request_);
    }
    return step;
}

void ClientSession::unexpected(const Reply& reply) const {
    throw ProtocolError("unexpected response " + wire::describe(reply.code) + " " + unexpected_context_);
}

// ---------------------------------------------------------------- establishing the session

Step ClientSession::start() {
    if (state_ != State::kStart) throw InternalError("the session has already started");
    if (me_) {
        id_ = me_->id;
        reporter_.info("reconnecting as " + me_->name + " (client id " + wire::to_hex(me_->id) + ")");
        return request(wire::reconnect_request(me_->id, me_->name), "827 (reconnect)", State::kReconnecting);
    }
    return start_registering();
}

Step ClientSession::start_registering() {
    reporter_.info("registering as " + name_);
    id_ = wire::ClientId{};
    return request(wire::register_request(id_, name_), "825 (register)", State::kRegistering);
}

std::optional<Step> ClientSession::next() {
    auto reply = parser_.next();
    if (!reply) return std::nullopt;
    return receive(*reply);
}

Step ClientSession::receive(const Reply& reply) {
    switch (state_) {
        case State::kReconnecting:
        case State::kRegistering:
        case State::kSendingKey:
        case State::kAwaitingCrc:
        case State::kAwaitingAck:
            break;
        default:
            throw ProtocolError("unexpected response " + wire::describe(reply.code) +
                                " while no reply was awaited");
    }
    if (reply.code == wire::Response::kServerError) return server_error(reply);
    switch (state_) {
        case State::kReconnecting: return on_reconnect_reply(reply);
        case State::kRegistering: return on_register_reply(reply);
        case State::kSendingKey: return on_key_reply(reply);
        case State::kAwaitingCrc: return on_crc_reply(reply);
        default: return on_ack_reply(reply);
    }
}

Step ClientSession::on_reconnect_reply(const Reply& reply) {
    if (reply.code == wire::Response::kReconnectDenied) {
        wire::check_optional_id_payload(reply.code, reply.payload);
        if (!re_register_) {
            throw IdentityError("the server denied the reconnection of client id " + wire::to_hex(me_->id) +
                                " (1606). me.info is kept unchanged: a 1606 is not authenticated in "
                                "version 3, and registering anew would lose this identity for a forged "
                                "answer. If the server really lost it, run again with --re-register "
                                "(the old files are kept as *.replaced-TIME)");
        }
        reporter_.info("reconnect denied (1606): registering anew (--re-register)");
        return start_registering();
    }
    if (reply.code != wire::Response::kReconnected) unexpected(reply);
    crypto::RsaPrivateKey key = [&] {
        try {
            return crypto::RsaPrivateKey::from_der(me_->private_key_der);
        } catch (const crypto::CryptoError& e) {
            throw UsageError(std::string("me.info: the private key cannot be loaded: ") + e.what());
        }
    }();
    aes_key_.emplace(unwrap_key(key, reply, "1605"));
    reporter_.info("reconnected; received a new AES key");
    state_ = State::kReady;
    return {};
}

Step ClientSession::on_register_reply(const Reply& reply) {
    if (reply.code == wire::Response::kRegistrationFailed) {
        wire::check_optional_id_payload(reply.code, reply.payload);
        throw RefusedError("registration refused by the server (1601): the name '" + name_ +
                           "' is probably taken");
    }
    if (reply.code != wire::Response::kRegistered) unexpected(reply);
    id_ = wire::parse_registered(reply.payload);
    if (id_ == wire::ClientId{}) throw ProtocolError("the server assigned the all-zero client id (1600)");
    reporter_.info("registered; client id " + wire::to_hex(id_));
    key_.emplace(new_key_());
    const wire::Bytes public_der = key_->public_key_der();
    if (public_der.size() != crypto::kPublicKeyDerSize) {
        throw InternalError("the public key DER is " + std::to_string(public_der.size()) +
                            " bytes; the protocol needs 160");
    }
    Step step = request(wire::public_key_request(id_, name_, public_der), "826 (public key)", State::kSendingKey);
    step.save_identity.emplace(name_, id_, key_->private_key_der());
    return step;
}

Step ClientSession::on_key_reply(const Reply& reply) {
    if (reply.code != wire::Response::kKeyReceived) unexpected(reply);
    aes_key_.emplace(unwrap_key(*key_, reply, "1602"));
    key_.reset();
    reporter_.info("received the AES key");
    state_ = State::kReady;
    return {};
}

crypto::AesKey ClientSession::unwrap_key(const crypto::RsaPrivateKey& key, const Reply& reply, const char* code) {
    const wire::KeyDelivery delivery = wire::parse_key_delivery(reply.code, reply.payload);
    if (delivery.id != id_) {
        throw ProtocolError(std::string(code) + " carries client id " + wire::to_hex(delivery.id) +
                            ", not ours (" + wire::to_hex(id_) + "): another client's answer");
    }
    try {
        const crypto::SecretBytes plain = key.decrypt(delivery.encrypted_key.data(), delivery.encrypted_key.size());
        return crypto::AesKey(plain.data(), plain.size());
    } catch (const crypto::CryptoError& e) {
        throw ProtocolError(std::string("cannot use the AES key of ") + code + ": " + e.what());
    }
}

// ---------------------------------------------------------------- files

void ClientSession::begin_file(const TransferPlan& plan) {
    if (state_ != State::kReady || !aes_key_) throw InternalError("begin_file() while no file can be sent");
    if (plan_ != &plan) {
        plan_ = &plan;
        attempt_ = 0;
        resend_after_error_ = false;
        gave_up_ = false;
        reporter_.info("sending " + plan.path.u8string() + " as '" + plan.file_name + "': " +
                       std::to_string(plan.orig_size) + " bytes, " + std::to_string(plan.total_packets) +
                       " packet(s) of up to " + std::to_string(plan.packet_size) + " bytes");
    }
    if (resend_after_error_) {
        resend_after_error_ = false;  // 1607 to a file: the same attempt once more
    } else {
        ++attempt_;
        server_errors_ = 0;
    }
    packets_.emplace(id_, *aes_key_, plan);
    state_ = State::kSending;
}

void ClientSession::file_data(const std::uint8_t* data, std::size_t size, const FrameSink& sink) {
    if (state_ != State::kSending) throw InternalError("file_data() without begin_file()");
    packets_->feed(data, size, sink);
}

void ClientSession::end_file(const FrameSink& sink) {
    if (state_ != State::kSending) throw InternalError("end_file() without begin_file()");
    cksum_ = packets_->finish(sink);
    packets_.reset();
    state_ = State::kAwaitingCrc;
    waiting_for_ = "1603 (file received) for " + plan_->file_name;
    unexpected_context_ =
        "after the last packet of " + plan_->file_name + " (attempt " + std::to_string(attempt_) + ")";
}

Step ClientSession::on_crc_reply(const Reply& reply) {
    if (reply.code == wire::Response::kAck && unanswered_901_ > 0) {
        wire::check_optional_id_payload(reply.code, reply.payload);
        --unanswered_901_;  // a tolerant server's answer to our 901: not for us
        return {};
    }
    if (reply.code != wire::Response::kFileReceived) unexpected(reply);
    const wire::FileReceived r = wire::parse_file_received(reply.payload);
    unanswered_901_ = 0;  // a server that answers 901 does so before the 1603
    const TransferPlan& plan = *plan_;
    if (r.id != id_) reporter_.warn("1603 carries client id " + wire::to_hex(r.id) + ", not ours");
    if (r.content_size != plan.content_size) {
        reporter_.warn("1603 reports " + std::to_string(r.content_size) + " encrypted bytes; we sent " +
                       std::to_string(plan.content_size));
    }
    // The name comes from the server: escaped, so it cannot drive the terminal.
    if (r.file_name != plan.file_name) reporter_.warn("1603 names the file '" + wire::escape_text(r.file_name) + "'");

    if (r.cksum == cksum_) {
        reporter_.info("CRC ok (" + std::to_string(cksum_) + ")");
        return request(wire::crc_request(id_, wire::Request::kCrcOk, plan.file_name), "900 (CRC ok)",
                       State::kAwaitingAck);
    }
    reporter_.warn("CRC mismatch on attempt " + std::to_string(attempt_) + " of " + std::to_string(kCrcAttempts) +
                   ": server " + std::to_string(r.cksum) + ", ours " + std::to_string(cksum_));
    if (attempt_ < kCrcAttempts) {
        ++unanswered_901_;  // no reply is defined; some servers send a 1604 anyway
        state_ = State::kReady;
        Step step;
        step.send.push_back(
            Outgoing{wire::crc_request(id_, wire::Request::kCrcRetry, plan.file_name), "901 (CRC wrong)"});
        step.send_file = true;
        return step;
    }
    gave_up_ = true;
    return request(wire::crc_request(id_, wire::Request::kCrcGiveUp, plan.file_name),
                   "902 (CRC wrong, giving up)", State::kAwaitingAck);
}

Step ClientSession::on_ack_reply(const Reply& reply) {
    if (reply.code != wire::Response::kAck) unexpected(reply);
    wire::check_optional_id_payload(reply.code, reply.payload);
    state_ = State::kReady;
    if (gave_up_) {
        throw IntegrityError("the CRC of " + plan_->file_name + " was still wrong after " +
                             std::to_string(kCrcAttempts) + " attempts; sent 902 and gave up");
    }
    reporter_.info("sent " + plan_->file_name);
    plan_ = nullptr;
    Step step;
    step.file_done = true;
    return step;
}

}  // namespace eft
