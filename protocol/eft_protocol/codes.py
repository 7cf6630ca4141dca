"""Numbers fixed by the version-3 wire format (spec sections 1-3)."""

from __future__ import annotations

import enum
import struct

VERSION = 3

#: client_id[16] | version u8 | code u16 | payload_size u32
REQUEST_HEADER = struct.Struct("<16sBHI")
#: version u8 | code u16 | payload_size u32
RESPONSE_HEADER = struct.Struct("<BHI")

CLIENT_ID_SIZE = 16
NAME_FIELD_SIZE = 255
PUBLIC_KEY_SIZE = 160
ENCRYPTED_AES_KEY_SIZE = 128
AES_KEY_SIZE = 32
AES_BLOCK_SIZE = 16

#: content_size u32 | orig_file_size u32 | packet_number u16 | total_packets u16 | file_name[255]
PACKET_FIELDS = struct.Struct("<IIHH255s")

#: The u16 packet fields and u32 size fields cap one version-3 file.
MAX_PACKETS = 0xFFFF
#: Ciphertext per 828 packet that our client sends; the spec leaves the slice size to
#: the sender. A server pays a fixed cost per packet: 256 KiB packets cost it ~0.4
#: CPU-s/GiB less than 64 KiB ones (docs/PERFORMANCE.md). ``--packet-size`` picks another.
DEFAULT_PACKET_SIZE = 256 * 1024
MAX_FILE_SIZE = 0xFFFFFFFF - AES_BLOCK_SIZE  # the padded ciphertext must fit a u32 too

#: Attempts at one file, both versions: the first and three retries (spec section 4;
#: version 4 keeps the rule with a digest instead of a CRC).
MAX_FILE_ATTEMPTS = 4

#: transfer.info limits a user name; the wire field would allow 254 characters.
MAX_USER_NAME = 100
MAX_FIELD_STRING = NAME_FIELD_SIZE - 1
#: The longest invitation token (the 825's name slot, ``wire.TOKEN_MARK``). Here, not in
#: ``wire``, so the client's command line checks it without loading every version-3
#: message class (about 10 ms of a version-4 run's start-up, docs/PERFORMANCE.md).
MAX_TOKEN = 64


class RequestCode(enum.IntEnum):
    REGISTER = 825
    SEND_PUBLIC_KEY = 826
    RECONNECT = 827
    SEND_FILE = 828
    CRC_OK = 900
    CRC_RETRY = 901
    CRC_GIVE_UP = 902


class ResponseCode(enum.IntEnum):
    REGISTERED = 1600
    REGISTRATION_FAILED = 1601
    PUBLIC_KEY_ACCEPTED = 1602
    FILE_RECEIVED = 1603
    ACKNOWLEDGED = 1604
    RECONNECTED = 1605
    RECONNECT_DENIED = 1606
    SERVER_ERROR = 1607


#: Payload size of each fixed-size request; 828 is PACKET_FIELDS.size plus its content.
REQUEST_PAYLOAD_SIZES: dict[RequestCode, int] = {
    RequestCode.REGISTER: NAME_FIELD_SIZE,
    RequestCode.SEND_PUBLIC_KEY: NAME_FIELD_SIZE + PUBLIC_KEY_SIZE,
    RequestCode.RECONNECT: NAME_FIELD_SIZE,
    RequestCode.CRC_OK: NAME_FIELD_SIZE,
    RequestCode.CRC_RETRY: NAME_FIELD_SIZE,
    RequestCode.CRC_GIVE_UP: NAME_FIELD_SIZE,
}

#: Payload size of each response. 1606 may also arrive empty (spec section 8).
RESPONSE_PAYLOAD_SIZES: dict[ResponseCode, int] = {
    ResponseCode.REGISTERED: CLIENT_ID_SIZE,
    ResponseCode.REGISTRATION_FAILED: 0,
    ResponseCode.PUBLIC_KEY_ACCEPTED: CLIENT_ID_SIZE + ENCRYPTED_AES_KEY_SIZE,
    ResponseCode.FILE_RECEIVED: CLIENT_ID_SIZE + 4 + NAME_FIELD_SIZE + 4,
    ResponseCode.ACKNOWLEDGED: CLIENT_ID_SIZE,
    ResponseCode.RECONNECTED: CLIENT_ID_SIZE + ENCRYPTED_AES_KEY_SIZE,
    ResponseCode.RECONNECT_DENIED: CLIENT_ID_SIZE,
    ResponseCode.SERVER_ERROR: 0,
}


def padded_size(plain_size: int) -> int:
    """Ciphertext size of a whole file: PKCS#7 always adds 1 to 16 bytes."""
    return AES_BLOCK_SIZE * (plain_size // AES_BLOCK_SIZE + 1)
