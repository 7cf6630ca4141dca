#include "file_packets.h"

#include <algorithm>
#include <string>

#include "errors.h"

namespace eft {

FilePackets::FilePackets(const wire::ClientId& id, const crypto::AesKey& key, const TransferPlan& plan)
    : plan_(plan),
      id_(id),
      encryptor_(key),
      header_{plan.content_size, plan.orig_size, 0, plan.total_packets, plan.file_name} {}

void FilePackets::feed(const std::uint8_t* data, std::size_t size, const FrameSink& sink) {
    if (cksum_.length() + size > plan_.orig_size) {
        throw UsageError(plan_.path.u8string() + " grew while it was being sent");
    }
    cksum_.update(data, size);
    encryptor_.update(data, size, cipher_);
    emit(false, sink);
}

std::uint32_t FilePackets::finish(const FrameSink& sink) {
    if (cksum_.length() != plan_.orig_size) {
        throw UsageError(plan_.path.u8string() + " became shorter while it was being sent");
    }
    encryptor_.finish(cipher_);
    emit(true, sink);
    if (next_ - 1 != plan_.total_packets) {
        throw InternalError("sent " + std::to_string(next_ - 1) + " packets for " + plan_.file_name +
                            "; planned " + std::to_string(plan_.total_packets));
    }
    return cksum_.value();
}

void FilePackets::emit(bool final, const FrameSink& sink) {
    std::size_t offset = 0;
    while (cipher_.size() - offset >= plan_.packet_size || (final && offset < cipher_.size())) {
        const std::size_t n = std::min<std::size_t>(plan_.packet_size, cipher_.size() - offset);
        if (next_ > plan_.total_packets) throw InternalError("packet count overflow for " + plan_.file_name);
        header_.packet_number = static_cast<std::uint16_t>(next_);
        wire::build_file_packet(frame_, id_, header_, cipher_.data() + offset, n);
        sink(frame_, header_.packet_number);
        ++next_;
        offset += n;
    }
    cipher_.erase(cipher_.begin(), cipher_.begin() + static_cast<std::ptrdiff_t>(offset));
}

}  // namespace eft
