"""A blocking version-4 peer for the wire characterization tests.

Built from the protocol's primitives only (Noise, the record layer, the plaintext
codecs), never from ``ClientSessionV4``: these tests pin what the server does at the
wire while the sessions behind both ends are redesigned, so they must not lean on them.
It can send what a correct client never would: any header, any plaintext, half a frame.
"""

from __future__ import annotations

import os
import socket

from eft_protocol.codes import RESPONSE_HEADER, RequestCode, ResponseCode
from eft_protocol.noise import HandshakeState, KeyPair
from eft_protocol.v4 import records as rec
from eft_protocol.v4.handshake import (
    SERVER_HELLO_SIZE,
    Intent,
    Offer,
    ServerHello,
    client_id_for,
    hello_header,
    intent_header,
    prologue,
    server_hello_header,
)

WAIT = 30.0  # a bound on a wait for something that must happen, never a margin


class PeerClosed(ConnectionError):
    """The server closed the connection."""


class WireV4:
    """One version-4 connection, one request at a time."""

    def __init__(self, address: str, key: KeyPair | None = None) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=WAIT)
        self.key = key or KeyPair.generate()
        self.client_id = client_id_for(self.key.public)
        self.noise: HandshakeState | None = None
        self.send_cipher: rec.RecordCipher | None = None
        self.recv_cipher: rec.RecordCipher | None = None
        self.server_hello: ServerHello | None = None
        self._buffer = bytearray()
        host, port = self.sock.getsockname()[:2]
        #: This end's address, as the server logs it (kept after the socket closes).
        self.local = f"{host}:{port}"

    def send(self, *frames: bytes) -> None:
        for frame in frames:
            self.sock.sendall(frame)

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                raise PeerClosed("the server closed the connection")
            self._buffer += data
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        return piece

    def closed_by_server(self) -> bool:
        """Wait for the server's next move: True if it closes without a byte more."""
        if self._buffer:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    # --- the handshake -----------------------------------------------------------------

    def hello(self) -> bytes:
        """Messages 1 and 2; returns message 2's header as it came."""
        header = hello_header()
        self.noise = HandshakeState(initiator=True, static=self.key, prologue=prologue(header))
        self.send(header + self.noise.write_message(Offer().encode()))
        answer = self._read_exactly(RESPONSE_HEADER.size)
        assert answer == server_hello_header(), answer.hex()
        self.server_hello = ServerHello.decode(
            self.noise.read_message(self._read_exactly(SERVER_HELLO_SIZE))
        )
        return answer

    def message_3(self, name: str, code: int = RequestCode.REGISTER) -> bytes:
        """Message 3 as bytes; the record keys are ready after it."""
        assert self.noise is not None
        intent = Intent(RequestCode(code), name).encode()
        header = intent_header(RequestCode(code), 48 + len(intent) + rec.TAG_SIZE)
        message = header + self.noise.write_message(intent)
        send, recv = self.noise.split()
        assert send.key is not None and recv.key is not None
        self.send_cipher, self.recv_cipher = rec.RecordCipher(send.key), rec.RecordCipher(recv.key)
        return message

    def intent(self, name: str, code: int = RequestCode.REGISTER) -> tuple[int, bytes]:
        self.send(self.message_3(name, code))
        return self.response()

    def register(self, name: str) -> None:
        self.hello()
        code, plaintext = self.intent(name, RequestCode.REGISTER)
        assert (code, plaintext) == (ResponseCode.REGISTERED, self.client_id), code

    def login(self, name: str) -> None:
        self.hello()
        code, plaintext = self.intent(name, RequestCode.RECONNECT)
        assert (code, plaintext) == (ResponseCode.RECONNECTED, self.client_id), code

    # --- records -----------------------------------------------------------------------

    def record(self, code: int, plaintext: bytes, client_id: bytes | None = None) -> bytes:
        assert self.send_cipher is not None
        return rec.request_record(
            self.send_cipher, self.client_id if client_id is None else client_id, code, plaintext
        )

    def request(self, code: int, plaintext: bytes) -> None:
        self.send(self.record(code, plaintext))

    def response(self) -> tuple[int, bytes]:
        """The next response record, opened."""
        header = self._read_exactly(RESPONSE_HEADER.size)
        version, code, size = RESPONSE_HEADER.unpack(header)
        assert version == 4, header.hex()
        payload = self._read_exactly(size)
        assert self.recv_cipher is not None
        return int(code), self.recv_cipher.open(header, payload)

    def meta(
        self, file_id: int, size: int, upload_id: bytes, name: str | bytes
    ) -> tuple[int, bytes]:
        self.request(RequestCode.SEND_FILE, meta_plaintext(file_id, size, upload_id, name))
        return self.response()

    def chunks(self, file_id: int, data: bytes, start: int = 1, stop: int | None = None) -> None:
        """Chunks ``start`` to ``stop`` (the last by default) of ``data``."""
        count = rec.chunk_count(len(data))
        for index in range(start, (stop or count) + 1):
            piece = data[(index - 1) * rec.CHUNK : index * rec.CHUNK]
            self.request(
                RequestCode.SEND_FILE, chunk_plaintext(file_id, index, index == count, piece)
            )

    def verdict(self, code: int, file_id: int) -> tuple[int, bytes]:
        self.request(code, rec.encode_file_id(file_id))
        return self.response()


def meta_plaintext(
    file_id: int, size: int, upload_id: bytes, name: str | bytes, algorithm: int = 1
) -> bytes:
    """828 metadata with any name at all (no client-side check): a ``str`` is sent as
    UTF-8 as it is (not normalised), ``bytes`` as they are."""
    raw = name if isinstance(name, bytes) else name.encode("utf-8", "surrogatepass")
    return (
        rec.encode_chunk_prefix(file_id, 0, False)
        + size.to_bytes(8, "little")
        + upload_id
        + bytes([algorithm])
        + len(raw).to_bytes(2, "little")
        + raw
    )


def chunk_plaintext(file_id: int, index: int, final: bool, data: bytes) -> bytes:
    return rec.encode_chunk_prefix(file_id, index, final) + data


def new_upload_id() -> bytes:
    return os.urandom(16)
