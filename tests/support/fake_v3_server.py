"""A scripted protocol-v3 server, independent of eft_server, for testing our clients.

Small and independent of ``eft_server`` on purpose: it lets a test make the server do what a
real server only does by accident (answer 1607 N times, send an empty 1606, announce an
absurd payload size, break a reply) and records every request it sees.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from Crypto.Cipher import AES, PKCS1_OAEP
from Crypto.PublicKey import RSA
from Crypto.Util.Padding import unpad

VERSION = 3
REQUEST_HEADER = struct.Struct("<16sBHI")
PACKET_FIELDS = struct.Struct("<IIHH255s")


def cksum(data: bytes) -> int:
    """POSIX cksum (spec section 6), bit by bit: slow but obviously right."""
    crc = 0

    def feed(byte: int) -> None:
        nonlocal crc
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF

    for b in data:
        feed(b)
    n = len(data)
    while n:
        feed(n & 0xFF)
        n >>= 8
    return ~crc & 0xFFFFFFFF


def response(code: int, payload: bytes = b"") -> bytes:
    return struct.pack("<BHI", VERSION, code, len(payload)) + payload


def name_field(text: str) -> bytes:
    return text.encode().ljust(255, b"\0")


def read_name(field_bytes: bytes) -> str:
    return field_bytes.split(b"\0", 1)[0].decode()


@dataclass
class Behaviour:
    answer_901: bool = False  # reply 1604 to 901 (a tolerant server)
    corrupt_crc: int = 0  # how many 1603s carry a wrong cksum; -1 = all
    errors_1607: dict[int, int] = field(default_factory=dict)  # request code -> 1607s first
    refuse_names: set[str] = field(default_factory=set)  # 825 -> 1601
    empty_1606: bool = False  # 1606 without its client id
    close_on: set[int] = field(default_factory=set)  # close instead of replying
    # Replace the reply to a request code: fn(default reply bytes) -> bytes to send.
    override: dict[int, Callable[[bytes], bytes]] = field(default_factory=dict)
    # Send the reply to a request code one byte at a time, this many seconds apart.
    dribble: dict[int, float] = field(default_factory=dict)


@dataclass
class Client:
    name: str
    public_key: RSA.RsaKey | None = None


class FakeV3Server:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.clients: dict[bytes, Client] = {}
        self.files: dict[tuple[str, str], bytes] = {}  # (client id hex, name) -> plaintext
        self.requests: list[int] = []
        self.errors: list[str] = []
        self._crc_answers = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeV3Server:
        self._accept.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._listener.close()
        for t in self._threads:
            t.join(timeout=5)
        # Whatever the test checked, a request this server found wrong (or a bug in it)
        # fails the test; a test that expects such errors reads and clears the list.
        if exc_type is None and self.errors:
            raise AssertionError(f"the scripted server saw errors: {self.errors}")

    def register(self, name: str, key: RSA.RsaKey) -> bytes:
        """Pre-registers a client (as if it had registered in an earlier run)."""
        cid = uuid.uuid4().bytes
        self.clients[cid] = Client(name, key.publickey())
        return cid

    # ------------------------------------------------------------------ plumbing
    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()  # before it is listed: __exit__ may join the list at any moment
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            with conn:
                _Session(self, conn).run()
        except (ConnectionError, TimeoutError, OSError):
            pass
        except Exception as exc:  # a bug in the test server: make it visible
            self.errors.append(repr(exc))


class _Session:
    def __init__(self, server: FakeV3Server, conn: socket.socket) -> None:
        self.s = server
        self.b = server.behaviour
        self.conn = conn
        self.aes_key: bytes | None = None
        self.cipher = bytearray()
        self.error_budget = dict(self.b.errors_1607)
        self.last_file: tuple[bytes, str] | None = None  # (client id, name) of the last 1603

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client closed")
            buf += chunk
        return bytes(buf)

    def send(self, code: int, reply: bytes) -> None:
        fn = self.b.override.get(code)
        data = fn(reply) if fn else reply
        gap = self.b.dribble.get(code)
        if gap is None:
            self.conn.sendall(data)
            return
        for i in range(len(data)):
            time.sleep(gap)  # the behaviour under test: a server that trickles
            self.conn.sendall(data[i : i + 1])

    def run(self) -> None:
        while True:
            try:
                header = self.recv_exact(REQUEST_HEADER.size)
            except ConnectionError:
                return
            cid, version, code, size = REQUEST_HEADER.unpack(header)
            payload = self.recv_exact(size)
            if version != VERSION:
                self.s.errors.append(f"request version {version}")
            self.s.requests.append(code)
            if code in self.b.close_on:
                return
            reply = self.handle(cid, code, payload)
            if reply is None:
                continue
            if code != 828 and self.error_budget.get(code, 0) > 0:
                self.error_budget[code] -= 1
                self.send(code, response(1607))
                continue
            self.send(code, reply)

    def handle(self, cid: bytes, code: int, payload: bytes) -> bytes | None:
        clients = self.s.clients
        if code == 825:
            name = read_name(payload[:255])
            if len(payload) != 255 or name in self.b.refuse_names:
                return response(1601)
            new_id = uuid.uuid4().bytes
            clients[new_id] = Client(name)
            return response(1600, new_id)
        if code == 826:
            assert len(payload) == 415, len(payload)
            der = payload[255:]
            assert len(der) == 160 and der.endswith(bytes.fromhex("020111")), der.hex()
            clients[cid].public_key = RSA.import_key(der)
            return self.new_key(cid, 1602)
        if code == 827:
            client = clients.get(cid)
            if client is None or client.public_key is None or client.name != read_name(payload):
                return response(1606, b"" if self.b.empty_1606 else cid)
            return self.new_key(cid, 1605)
        if code == 828:
            return self.packet(cid, payload)
        if code in (900, 901, 902):
            self.check_verdict(cid, code, payload)
        if code in (900, 902):
            return response(1604, cid)
        if code == 901:
            return response(1604, cid) if self.b.answer_901 else None
        self.s.errors.append(f"unknown request code {code}")
        return response(1607)

    def check_verdict(self, cid: bytes, code: int, payload: bytes) -> None:
        """A verdict names the file of the last 1603 on this connection, with its id."""
        name = read_name(payload[:255])
        if len(payload) != 255:
            self.s.errors.append(f"{code} with a {len(payload)}-byte payload")
        if self.last_file is None:
            self.s.errors.append(f"{code} for {name!r} before any 1603")
        elif (cid, name) != self.last_file:
            self.s.errors.append(f"{code} for {name!r}, but 1603 was for {self.last_file[1]!r}")

    def new_key(self, cid: bytes, code: int) -> bytes:
        self.aes_key = os.urandom(32)
        public_key = self.s.clients[cid].public_key
        assert public_key is not None
        enc = PKCS1_OAEP.new(public_key).encrypt(self.aes_key)
        return response(code, cid + enc)

    def packet(self, cid: bytes, payload: bytes) -> bytes | None:
        content_size, orig_size, number, total, raw_name = PACKET_FIELDS.unpack_from(payload)
        content = payload[PACKET_FIELDS.size :]
        if number == 1:
            self.cipher = bytearray()
        self.cipher += content
        if number != total:
            return None
        name = read_name(raw_name)
        if self.error_budget.get(828, 0) > 0:
            self.error_budget[828] -= 1
            return response(1607)
        assert self.aes_key is not None
        assert len(self.cipher) == content_size == 16 * (orig_size // 16 + 1), (
            len(self.cipher),
            content_size,
        )
        plain = unpad(
            AES.new(self.aes_key, AES.MODE_CBC, bytes(16)).decrypt(bytes(self.cipher)), 16
        )
        assert len(plain) == orig_size
        self.s.files[(cid.hex(), name)] = plain
        self.last_file = (cid, name)
        crc = cksum(plain)
        self.s._crc_answers += 1
        if self.b.corrupt_crc < 0 or self.s._crc_answers <= self.b.corrupt_crc:
            crc ^= 0x1
        return response(
            1603, cid + struct.pack("<I", content_size) + name_field(name) + struct.pack("<I", crc)
        )
