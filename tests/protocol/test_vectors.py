"""Every test vector of spec section 9, byte for byte."""

from __future__ import annotations

import pytest

from eft_protocol import crypto
from eft_protocol.cksum import Cksum, cksum
from eft_protocol.codes import RequestCode, ResponseCode
from eft_protocol.wire import FilePacket, FileReceived, PacketHeader, RegisterRequest

KEY = bytes(range(32))
CLIENT_ID = bytes(range(16))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 4294967295),
        (b"a", 1220704766),
        (b"123456789", 930766865),
        (b"hello world\n", 3733384285),
        (bytes(1_000_000), 1345294785),
    ],
)
def test_cksum_vectors(data: bytes, expected: int) -> None:
    assert cksum(data) == expected


def test_cksum_streams_in_any_pieces() -> None:
    data = bytes(range(256)) * 301
    for piece in (1, 7, 16, 4096, len(data)):
        checksum = Cksum()
        for start in range(0, len(data), piece):
            checksum.update(data[start : start + piece])
        # python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 301)' | cksum
        assert checksum.value == 3046930044
        assert checksum.length == len(data)


@pytest.mark.parametrize(
    ("plaintext", "ciphertext_hex"),
    [
        (b"", "9f3b7504926f8bd36e3118e903a4cd4a"),
        (b"hello world\n", "0b2c878e3b34b315443e0f44b3091802"),
        (b"A" * 16, "72ada3664473c418c917a496fcc37066ab5fa98b9d6a251e66dd7a7f9f21714a"),
    ],
)
def test_aes_vectors(plaintext: bytes, ciphertext_hex: str) -> None:
    ciphertext = bytes.fromhex(ciphertext_hex)
    assert crypto.encrypt_file_bytes(KEY, plaintext) == ciphertext
    assert crypto.decrypt_file_bytes(KEY, ciphertext) == plaintext


def test_register_frame() -> None:
    frame = RegisterRequest(bytes(16), "Alice").encode()
    expected = bytes.fromhex("00" * 16 + "03" + "3903" + "ff000000") + b"Alice" + bytes(250)
    assert frame == expected
    assert len(frame) == 278


def test_file_packet_frame() -> None:
    ciphertext = crypto.encrypt_file_bytes(KEY, b"hello world\n")
    header = PacketHeader(CLIENT_ID, 16, 12, 1, 1, "hello.txt")
    frame = FilePacket(header, ciphertext).encode()
    expected = (
        bytes.fromhex("000102030405060708090a0b0c0d0e0f" + "03" + "3c03" + "1b010000")
        + bytes.fromhex("10000000" + "0c000000" + "0100" + "0100")
        + b"hello.txt"
        + bytes(255 - 9)
        + bytes.fromhex("0b2c878e3b34b315443e0f44b3091802")
    )
    assert frame == expected
    assert len(frame) == 306


def test_file_received_frame() -> None:
    frame = FileReceived(CLIENT_ID, 16, "hello.txt", cksum(b"hello world\n")).encode()
    expected = (
        bytes.fromhex("03" + "4306" + "17010000")
        + CLIENT_ID
        + bytes.fromhex("10000000")
        + b"hello.txt"
        + bytes(246)
        + bytes.fromhex("5dec86de")
    )
    assert frame == expected
    assert len(frame) == 286


@pytest.mark.parametrize(
    ("code", "hex_bytes"),
    [
        (RequestCode.REGISTER, "3903"),
        (RequestCode.SEND_PUBLIC_KEY, "3a03"),
        (RequestCode.RECONNECT, "3b03"),
        (RequestCode.SEND_FILE, "3c03"),
        (RequestCode.CRC_OK, "8403"),
        (RequestCode.CRC_RETRY, "8503"),
        (RequestCode.CRC_GIVE_UP, "8603"),
        *[(ResponseCode(1600 + i), f"{0x40 + i:02x}06") for i in range(8)],
    ],
)
def test_code_bytes(code: int, hex_bytes: str) -> None:
    assert int(code).to_bytes(2, "little").hex() == hex_bytes
