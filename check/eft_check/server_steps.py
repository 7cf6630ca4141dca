"""The steps of a version-3 session, as a checker of a server takes them.

Every step reads the server's answer and judges it against docs/PROTOCOL-v3.md, raising
a ``Finding`` that names the section and, where the bytes show one, the known mistake.
Frames are built with ``eft_protocol``'s encoders and crypto; only the deliberately
wrong variants used to diagnose a failure (per-packet encryption, swapped fields) are
made here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from Crypto.PublicKey import RSA

from eft_protocol import crypto, wire
from eft_protocol.cksum import cksum
from eft_protocol.codes import AES_KEY_SIZE, ResponseCode, padded_size

from .probe import Answer, Probe, expected_size
from .report import Finding, deviation, fail


@dataclass
class Identity:
    name: str
    client_id: bytes
    aes_key: bytes


def check_header(answer: Answer, want: ResponseCode) -> None:
    """The answer has the wanted code and that code's payload size."""
    if answer.code != want:
        got = answer.describe()
        if answer.code == ResponseCode.SERVER_ERROR:
            got = "1607 (server error)"
        raise fail(f"{int(want)}", got, answer_code=answer.code)
    size = expected_size(answer.code)
    if answer.payload_size == size:
        return
    if answer.payload_size == 0 and want is ResponseCode.ACKNOWLEDGED:
        raise fail("1604 carrying the 16-byte client id", "an empty 1604", "empty-1604")
    if answer.payload_size == 0 and want is ResponseCode.RECONNECT_DENIED:
        raise deviation("1606 carrying the 16-byte client id", "an empty 1606", "empty-1606")
    raise fail(
        f"{int(want)} with payload_size {size}",
        f"payload_size {answer.payload_size}",
        "payload-size-mismatch",
    )


def expect(probe: Probe, want: ResponseCode) -> Answer:
    answer = probe.receive()
    check_header(answer, want)
    return answer


def register(probe: Probe, name: str) -> bytes:
    probe.send(wire.RegisterRequest(wire.ZERO_CLIENT_ID, name).encode())
    answer = expect(probe, ResponseCode.REGISTERED)
    if answer.payload == wire.ZERO_CLIENT_ID:
        raise fail("a new client id", "the all-zero id")
    return answer.payload


def unwrap_key(rsa_key: RSA.RsaKey, answer: Answer, client_id: bytes) -> bytes:
    """The client id echoed, and a 128-byte OAEP-SHA-1 wrapping of 32 bytes."""
    if answer.payload[:16] != client_id:
        raise fail(f"client id {client_id.hex()}", f"client id {answer.payload[:16].hex()}")
    wrapped = answer.payload[16:]
    try:
        aes_key = crypto.unwrap_aes_key(rsa_key, wrapped)
    except Exception as exc:  # the message says which way it is wrong
        raise fail("an AES key wrapped with RSAES-OAEP, SHA-1, 32 bytes", str(exc)) from None
    if len(aes_key) != AES_KEY_SIZE:
        raise fail("32 bytes", f"{len(aes_key)} bytes")
    return aes_key


def send_key(probe: Probe, rsa_key: RSA.RsaKey, name: str, client_id: bytes) -> bytes:
    der = crypto.public_key_der(rsa_key)
    probe.send(wire.PublicKeyRequest(client_id, name, der).encode())
    return unwrap_key(rsa_key, expect(probe, ResponseCode.PUBLIC_KEY_ACCEPTED), client_id)


def handshake(probe: Probe, rsa_key: RSA.RsaKey, name: str) -> Identity:
    client_id = register(probe, name)
    return Identity(name, client_id, send_key(probe, rsa_key, name, client_id))


# --- files ------------------------------------------------------------------------


def packets(
    who: Identity,
    file_name: str,
    data: bytes,
    packet_size: int,
    *,
    per_packet_cbc: bool = False,
    swapped: bool = False,
) -> list[bytes]:
    """The 828 frames of one attempt. The two flags make the known mistakes, to find out
    whether a server that refuses the right form expects one of them."""
    if per_packet_cbc:
        plain = [data[i : i + packet_size] for i in range(0, len(data), packet_size)] or [b""]
        slices = [crypto.encrypt_file_bytes(who.aes_key, piece) for piece in plain]
    else:
        ciphertext = crypto.encrypt_file_bytes(who.aes_key, data)
        slices = [ciphertext[i : i + packet_size] for i in range(0, len(ciphertext), packet_size)]
    content_size = sum(len(piece) for piece in slices)
    total = len(slices)
    frames = []
    for number, piece in enumerate(slices, start=1):
        first, second = (total, number) if swapped else (number, total)
        header = wire.PacketHeader(who.client_id, content_size, len(data), first, second, file_name)
        frames.append(header.encode_frame_start(len(piece)) + piece)
    return frames


def receive_file_received(
    probe: Probe, who: Identity, file_name: str, data: bytes, total_packets: int
) -> tuple[Answer, list[Finding]]:
    """The 1603 of an attempt, judged field by field; tolerated deviations are returned
    (the session can go on), the rest raised."""
    early: list[Answer] = []
    answer = probe.receive()
    while answer.code == ResponseCode.ACKNOWLEDGED:
        early.append(answer)  # answers that have no business before the 1603
        if len(early) > total_packets:
            break
        answer = probe.receive()
    if early:
        if total_packets > 1 and len(early) >= total_packets - 1:
            raise fail(
                "no answer before the attempt's last packet",
                f"{len(early)} answers ({early[0].code}) before the 1603",
                "answers-each-828",
            )
        raise fail("1603 first", f"{early[0].describe()} before it", "1604-before-1603")
    check_header(answer, ResponseCode.FILE_RECEIVED)
    return answer, judge_file_received(answer, who, file_name, data)


def judge_file_received(
    answer: Answer, who: Identity, file_name: str, data: bytes
) -> list[Finding]:
    payload = answer.payload
    if payload[:16] != who.client_id:
        raise fail(f"client id {who.client_id.hex()}", f"{payload[:16].hex()}")
    content_size, raw_name, crc = struct.unpack("<I255sI", payload[16:])
    want_crc = cksum(data)
    if crc != want_crc:
        if crc == zlib.crc32(data):
            raise fail(f"cksum {want_crc}", f"{crc}, zlib's CRC-32", "crc32-not-cksum")
        raise fail(f"cksum {want_crc}", f"{crc}")
    tolerated: list[Finding] = []
    ciphertext_size = padded_size(len(data))
    if content_size != ciphertext_size:
        mistake = "plaintext-sizes" if content_size == len(data) else None
        tolerated.append(
            deviation(
                f"content_size {ciphertext_size} (the ciphertext received)",
                f"{content_size}",
                mistake,
            )
        )
    echoed = raw_name.split(b"\0", 1)[0]
    if echoed != file_name.encode():
        tolerated.append(deviation(f"file name {file_name!r} echoed as sent", f"{echoed!r}"))
    return tolerated


def verdict(probe: Probe, who: Identity, file_name: str, code: int = 900) -> None:
    """900 (or 902) and its 1604, which must carry the client id."""
    request = wire.CrcOkRequest if code == 900 else wire.CrcGiveUpRequest
    probe.send(request(who.client_id, file_name).encode())
    answer = expect(probe, ResponseCode.ACKNOWLEDGED)
    if answer.payload != who.client_id:
        raise fail(f"1604 with client id {who.client_id.hex()}", answer.payload.hex())
