// libFuzzer target: the response parser and the payload decoders, on any bytes cut into
// pieces of any size. Must never crash, hang or read out of bounds; a bad response is a
// ProtocolError.
#include <cstddef>
#include <cstdint>

#include "errors.h"
#include "response_parser.h"
#include "wire.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t piece = 1 + data[0] % 16;  // how the bytes arrive
    ++data;
    --size;
    eft::ResponseParser parser;
    try {
        for (std::size_t at = 0; at < size; at += piece) {
            parser.feed(data + at, size - at < piece ? size - at : piece);
            while (auto reply = parser.next()) {
                switch (reply->code) {
                    case eft::wire::Response::kRegistered: (void)eft::wire::parse_registered(reply->payload); break;
                    case eft::wire::Response::kKeyReceived:
                    case eft::wire::Response::kReconnected:
                        (void)eft::wire::parse_key_delivery(reply->code, reply->payload);
                        break;
                    case eft::wire::Response::kFileReceived: {
                        const auto r = eft::wire::parse_file_received(reply->payload);
                        (void)eft::wire::escape_text(r.file_name);
                        break;
                    }
                    default: eft::wire::check_optional_id_payload(reply->code, reply->payload); break;
                }
            }
        }
    } catch (const eft::ProtocolError&) {
        // expected for malformed input
    }
    return 0;
}
