// One attempt at a file, without I/O: plaintext in (any piece size), whole 828 frames out.
// Encrypts with AES-256-CBC (zero IV, PKCS#7 over the whole file), computes the cksum of
// the plaintext on the way, and cuts the ciphertext into the plan's packets.
#pragma once

#include <cstdint>
#include <functional>

#include "cksum.h"
#include "crypto.h"
#include "transfer.h"
#include "wire.h"

namespace eft {

// Receives each frame as soon as it is whole; `number` is the packet's (1-based). The
// frame's buffer is reused for the next one.
using FrameSink = std::function<void(const wire::Bytes& frame, std::uint16_t number)>;

class FilePackets {
public:
    FilePackets(const wire::ClientId& id, const crypto::AesKey& key, const TransferPlan& plan);

    // Throws UsageError if more bytes arrive than the plan's file size.
    void feed(const std::uint8_t* data, std::size_t size, const FrameSink& sink);
    // Pads, emits the last frames and returns the cksum. Throws UsageError if fewer bytes
    // than the plan's size were fed.
    std::uint32_t finish(const FrameSink& sink);

private:
    void emit(bool final, const FrameSink& sink);

    const TransferPlan& plan_;
    wire::ClientId id_;
    crypto::AesCbcEncryptor encryptor_;
    Cksum cksum_;
    wire::Bytes cipher_;  // ciphertext not yet framed: less than one packet plus one piece
    wire::Bytes frame_;
    wire::PacketHeader header_;
    std::uint32_t next_ = 1;
};

}  // namespace eft
