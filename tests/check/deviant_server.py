"""A small, threaded version-3 server that conforms unless told to make a known mistake.

Each ``Quirks`` flag reproduces one mistake seen in servers in the wild, so a test can
check that ``eft-check server`` names exactly that one. It uses ``eft_protocol``'s
encoders and crypto (the mistakes are in how they are used, not in them).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import zlib
from dataclasses import dataclass, field

from eft_protocol import crypto, wire
from eft_protocol.cksum import cksum
from eft_protocol.codes import (
    PACKET_FIELDS,
    REQUEST_HEADER,
    REQUEST_PAYLOAD_SIZES,
    RESPONSE_HEADER,
    VERSION,
    RequestCode,
    ResponseCode,
)


@dataclass
class Quirks:
    one_recv: bool = False  # reads each request header with a single recv
    per_packet_cbc: bool = False  # decrypts each packet on its own
    swapped_fields: bool = False  # reads total_packets where packet_number is
    plaintext_sizes: bool = False  # 1603 content_size = the plaintext's size
    empty_1604: bool = False  # 1604 without the client id
    empty_1606: bool = False  # 1606 without the client id
    ack_before_1603: bool = False  # a 1604, then the 1603
    answer_each_828: bool = False  # a 1604 for every packet but the last
    answer_901: bool = False  # 901 answered with 1604
    crc32: bool = False  # zlib's CRC-32 instead of cksum
    refuse_paths: bool = False  # a file name with "/" gets 1607
    short_1603_size: bool = False  # 1603's payload_size leaves out the cksum (275, not 279)


@dataclass
class _Client:
    name: str
    public_key: bytes | None = None


@dataclass
class _Attempt:
    name: str
    total: int
    cipher: list[bytes] = field(default_factory=list)


_CODES = {int(code) for code in RequestCode}


class _Close(Exception):
    pass


class DeviantServer:
    def __init__(self, quirks: Quirks | None = None) -> None:
        self.quirks = quirks or Quirks()
        self.clients: dict[bytes, _Client] = {}
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> DeviantServer:
        accept = threading.Thread(target=self._accept_loop, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=10)

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        with conn, contextlib.suppress(_Close, OSError):
            try:
                _Session(self, conn).run()
            except (_Close, OSError):
                raise
            except Exception as exc:  # a bug in this test server: make it visible
                self.errors.append(repr(exc))


class _Session:
    def __init__(self, server: DeviantServer, conn: socket.socket) -> None:
        self.server = server
        self.q = server.quirks
        self.conn = conn
        self.client_id: bytes | None = None
        self.aes_key: bytes | None = None
        self.attempt: _Attempt | None = None
        self.pending: str | None = None  # file awaiting 900/901/902

    def recv_exact(self, size: int) -> bytes:
        buffer = bytearray()
        while len(buffer) < size:
            chunk = self.conn.recv(size - len(buffer))
            if not chunk:
                raise _Close
            buffer += chunk
        return bytes(buffer)

    def send(self, frame: bytes) -> None:
        self.conn.sendall(frame)

    def run(self) -> None:
        while True:
            if self.q.one_recv:
                header = self.conn.recv(REQUEST_HEADER.size)
                if len(header) < REQUEST_HEADER.size:
                    raise _Close  # what it read is no header: it gives up
            else:
                header = self.recv_exact(REQUEST_HEADER.size)
            client_id, version, code, size = REQUEST_HEADER.unpack(header)
            if version != VERSION or size > 16 << 20:
                self.send(wire.ServerError().encode())
                raise _Close
            payload = self.recv_exact(size)
            try:
                self.handle(client_id, code, payload)
            except Exception:  # any bad request: 1607, and the session goes on
                self.send(wire.ServerError().encode())

    def handle(self, client_id: bytes, code: int, payload: bytes) -> None:
        if code not in _CODES:
            raise ValueError("unknown code")
        fixed = REQUEST_PAYLOAD_SIZES.get(RequestCode(code))
        if fixed is not None and len(payload) != fixed:
            raise ValueError("bad request")
        if code != RequestCode.SEND_FILE and self.attempt is not None:
            self.attempt = None
        clients = self.server.clients
        if code == RequestCode.REGISTER:
            assert self.client_id is None
            name = wire.decode_string(payload)
            with self.server.lock:
                if any(c.name == name for c in clients.values()):
                    self.send(wire.RegistrationFailed().encode())
                    return
                new_id = os.urandom(16)
                clients[new_id] = _Client(name)
            self.client_id = new_id
            self.send(wire.Registered(new_id).encode())
        elif code == RequestCode.SEND_PUBLIC_KEY:
            assert client_id == self.client_id
            key = crypto.load_public_key(payload[255:])
            clients[client_id].public_key = payload[255:]
            self.new_key(key, wire.PublicKeyAccepted)
        elif code == RequestCode.RECONNECT:
            known = clients.get(client_id)
            name = wire.decode_string(payload)
            if known is None or known.public_key is None or known.name != name:
                if self.q.empty_1606:
                    self.send(RESPONSE_HEADER.pack(VERSION, ResponseCode.RECONNECT_DENIED, 0))
                else:
                    self.send(wire.ReconnectDenied(client_id).encode())
                return
            self.client_id = client_id
            self.new_key(crypto.load_public_key(known.public_key), wire.Reconnected)
        elif code == RequestCode.SEND_FILE:
            self.packet(client_id, payload)
        else:
            name = wire.decode_string(payload)
            assert self.pending == name
            if code == RequestCode.CRC_RETRY:
                if self.q.answer_901:
                    self.ack()
                return
            self.pending = None
            self.ack()

    def ack(self) -> None:
        assert self.client_id is not None
        if self.q.empty_1604:
            self.send(RESPONSE_HEADER.pack(VERSION, ResponseCode.ACKNOWLEDGED, 0))
        else:
            self.send(wire.Acknowledged(self.client_id).encode())

    def new_key(self, public_key: object, response: type) -> None:
        self.aes_key = crypto.new_aes_key()
        wrapped = crypto.wrap_aes_key(public_key, self.aes_key)  # type: ignore[arg-type]
        self.send(response(self.client_id, wrapped).encode())

    def packet(self, client_id: bytes, payload: bytes) -> None:
        assert client_id == self.client_id and self.aes_key is not None
        content_size, orig_size, number, total, raw_name = PACKET_FIELDS.unpack_from(payload)
        if self.q.swapped_fields:
            number, total = total, number
        name = wire.decode_string(raw_name)
        if self.q.refuse_paths and "/" in name:
            raise ValueError("no paths")
        if number == 1:
            self.attempt = _Attempt(name, total)
        attempt = self.attempt
        if attempt is None or total != attempt.total or number != len(attempt.cipher) + 1:
            self.attempt = None
            raise ValueError("packet out of order")
        attempt.cipher.append(payload[PACKET_FIELDS.size :])
        if number < total:
            if self.q.answer_each_828:
                self.ack()
            return
        self.attempt = None
        if self.q.per_packet_cbc:
            plain = b"".join(crypto.decrypt_file_bytes(self.aes_key, c) for c in attempt.cipher)
        else:
            plain = crypto.decrypt_file_bytes(self.aes_key, b"".join(attempt.cipher))
        assert len(plain) == orig_size
        received = sum(len(c) for c in attempt.cipher)
        crc = zlib.crc32(plain) if self.q.crc32 else cksum(plain)
        if self.q.ack_before_1603:
            self.ack()
        self.pending = name
        size = len(plain) if self.q.plaintext_sizes else received
        assert content_size == received or self.q.per_packet_cbc
        frame = wire.FileReceived(client_id, size, name, crc).encode()
        if self.q.short_1603_size:
            frame = frame[:3] + (len(frame) - 7 - 4).to_bytes(4, "little") + frame[7:]
        self.send(frame)
