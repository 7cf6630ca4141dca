"""The scripted version-3 server that ``eft-check client`` runs a client under test against.

It plays one scenario (``Script``): answers 1607 a given number of times, a wrong cksum,
1601, 1606, answers in 1-byte writes or held back and coalesced, or late. It records
every frame and what it noticed on the way (``Observation``: a known mistake seen in
the bytes). Unlike our real server it tolerates every recognisable mistake where it
can, so that one mistake does not hide the next: a per-packet-encrypted file is still
answered with the right cksum, a client waiting for a 901's answer gets one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from Crypto.PublicKey import RSA

from eft_protocol import crypto, wire
from eft_protocol.codes import PACKET_FIELDS, REQUEST_HEADER, VERSION, RequestCode

from .packets import Attempt, Packet
from .report import Finding, Frame, deviation, fail

#: An 828 larger than this is taken for a garbled header.
MAX_FRAME = 64 << 20


@dataclass
class Script:
    errors_1607: dict[int, int] = field(default_factory=dict)  # request code -> 1607s first
    wrong_crc: int = 0  # this many 1603s carry a wrong cksum; -1: all
    refuse_name: bool = False  # 825 -> 1601
    split_answers: bool = False  # every answer in 1-byte writes
    coalesce_901: bool = False  # answer 901 with 1604, sent together with the next 1603
    delay: float = 0.0  # seconds before each answer


@dataclass
class Registered:
    name: str
    public_key: bytes | None = None


@dataclass
class Request:
    code: int
    client_id: bytes
    payload: bytes


class ScriptedServer:
    def __init__(self, script: Script, patience: float, timeout: float) -> None:
        self.script = script
        self.patience = patience
        self.timeout = timeout
        self.clients: dict[bytes, Registered] = {}
        self.requests: list[Request] = []
        self.attempts: list[Attempt] = []
        self.frames: list[Frame] = []
        self.findings: list[Finding] = []
        self.expected_file: bytes = b""
        self.crc_answers = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accept.join(timeout=self.timeout)
        for thread in self._threads:
            thread.join(timeout=self.timeout)

    def forget(self) -> None:
        """As after a restart with an empty registry: the next 827 gets 1606."""
        self.clients.clear()

    def reset_log(self) -> None:
        self.requests, self.attempts, self.frames, self.findings = [], [], [], []

    def note(self, finding: Finding) -> None:
        with self._lock:
            self.findings.append(finding)

    def codes(self) -> list[int]:
        return [request.code for request in self.requests]

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
        with conn, contextlib.suppress(ConnectionError, TimeoutError, OSError, _Hangup):
            _Session(self, conn).run()


class _Hangup(Exception):
    pass


class _Session:
    def __init__(self, server: ScriptedServer, conn: socket.socket) -> None:
        self.server = server
        self.script = server.script
        self.conn = conn
        self.aes_key: bytes | None = None
        self.client_id = wire.ZERO_CLIENT_ID
        self.budget = dict(self.script.errors_1607)
        self.attempt: Attempt | None = None
        self.unanswered_901 = False
        self.held: bytes = b""  # a 1604 kept back to go out with the next answer

    # --- reading ---------------------------------------------------------------------

    def recv_exact(self, size: int, what: str) -> bytes:
        """Waits ``patience`` at a time; what silence means depends on where it falls."""
        buffer = bytearray()
        waited = 0.0
        self.conn.settimeout(self.server.patience)
        while len(buffer) < size:
            try:
                chunk = self.conn.recv(size - len(buffer))
            except TimeoutError:
                waited += self.server.patience
                self.on_silence(bytes(buffer), size, what, waited)
                continue
            if not chunk:
                raise _Hangup
            buffer += chunk
        return bytes(buffer)

    def on_silence(self, partial: bytes, size: int, what: str, waited: float) -> None:
        if partial:
            self.server.note(
                fail(
                    f"the {size} bytes of {what} its header announced",
                    f"{len(partial)} bytes, then silence",
                    "payload-size-mismatch",
                )
            )
            raise _Hangup
        if self.attempt is not None and not self.attempt.complete:
            count = len(self.attempt.packets)
            _, total = self.attempt.numbers(self.attempt.packets[-1])
            # Silence right after packet 1 is a client waiting for an answer; later on,
            # a total_packets larger than the packets the client meant to send.
            self.server.note(
                fail(
                    "every packet of the file sent without waiting for an answer",
                    f"silence after packet 1 of {total}",
                    "waits-for-828-answer",
                )
                if count == 1
                else fail(f"{total} packets, as total_packets says", f"{count}, then silence")
            )
            raise _Hangup
        if self.unanswered_901:
            self.server.note(
                deviation(
                    "the file streamed again right after 901",
                    f"silence for {self.server.patience:g} s; answered 1604 to go on",
                    "waits-for-901-answer",
                )
            )
            self.unanswered_901 = False
            # A 1604 held back for coalescing goes now: the client will not go on without.
            ack, self.held = self.held or wire.Acknowledged(self.client_id).encode(), b""
            self.send(ack)
            return
        if waited >= self.server.timeout:
            raise _Hangup

    def run(self) -> None:
        first = True
        while True:
            header = self.recv_exact(REQUEST_HEADER.size, "a request header")
            client_id, version, code, size = REQUEST_HEADER.unpack(header)
            if version != VERSION or size > MAX_FRAME:
                self.server.frames.append(Frame("received", header, request=True))
                where = "at the start" if first else "where the previous frame ended"
                self.server.note(
                    fail(
                        f"a request header (version 3) {where}",
                        f"version {version}, code {code}, payload_size {size}",
                        None if first else "payload-size-mismatch",
                    )
                )
                raise _Hangup
            first = False
            if code == RequestCode.SEND_FILE and size < PACKET_FIELDS.size:
                self.server.frames.append(Frame("received", header, request=True))
                self.server.note(
                    fail(
                        f"an 828 payload_size of at least {PACKET_FIELDS.size} (the fields)",
                        f"payload_size {size}",
                        "payload-size-mismatch",
                    )
                )
                raise _Hangup
            payload = self.recv_exact(size, f"request {code}")
            self.server.frames.append(Frame("received", header + payload, request=True))
            self.server.requests.append(Request(code, client_id, payload))
            self.unanswered_901 = code == RequestCode.CRC_RETRY
            try:
                self.handle(client_id, code, payload)
            except (OSError, _Hangup):
                raise
            except Exception as exc:  # a request we cannot read: say so, answer 1607
                self.server.note(fail(f"a well-formed request {code}", f"{exc}"))
                self.send(wire.ServerError().encode())

    # --- answering ---------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        if self.script.delay:
            time.sleep(self.script.delay)  # the scenario: a slow server
        frame, self.held = self.held + frame, b""
        self.server.frames.append(Frame("sent", frame, request=False))
        if self.script.split_answers:
            for i in range(len(frame)):
                self.conn.sendall(frame[i : i + 1])
                time.sleep(0.002)  # so the bytes arrive apart
        else:
            self.conn.sendall(frame)

    def answer(self, code: int, frame: bytes) -> None:
        if self.budget.get(code, 0) > 0:
            self.budget[code] -= 1
            frame = wire.ServerError().encode()
        self.send(frame)

    def handle(self, client_id: bytes, code: int, payload: bytes) -> None:
        clients = self.server.clients
        if code == RequestCode.REGISTER:
            if self.budget.get(code, 0) > 0 or self.script.refuse_name:
                self.answer(code, wire.RegistrationFailed().encode())
                return
            self.client_id = os.urandom(16)
            clients[self.client_id] = Registered(wire.decode_string(payload))
            self.send(wire.Registered(self.client_id).encode())
        elif code == RequestCode.SEND_PUBLIC_KEY:
            known = clients.get(client_id)
            if known is None or len(payload) != 415:
                self.send(wire.ServerError().encode())
                return
            crypto.load_public_key(payload[255:])  # §4: RSA-1024, e=17, canonical DER
            known.public_key = payload[255:]
            self.client_id = client_id
            self.answer(code, self.new_key(wire.PublicKeyAccepted))
        elif code == RequestCode.RECONNECT:
            known = clients.get(client_id)
            name = wire.decode_string(payload)
            if known is None or known.public_key is None or known.name != name:
                self.answer(code, wire.ReconnectDenied(client_id).encode())
                return
            self.client_id = client_id
            self.answer(code, self.new_key(wire.Reconnected))
        elif code == RequestCode.SEND_FILE:
            self.packet(payload)
        elif code in (RequestCode.CRC_OK, RequestCode.CRC_GIVE_UP):
            self.attempt = None
            self.answer(code, wire.Acknowledged(self.client_id).encode())
        elif code == RequestCode.CRC_RETRY:
            self.attempt = None
            if self.script.coalesce_901:
                self.held = wire.Acknowledged(self.client_id).encode()
        else:
            self.send(wire.ServerError().encode())

    def new_key(self, response: type[wire.PublicKeyAccepted | wire.Reconnected]) -> bytes:
        known = self.server.clients[self.client_id]
        assert known.public_key is not None
        self.aes_key = crypto.new_aes_key()
        public_key = RSA.import_key(known.public_key)
        return response(self.client_id, crypto.wrap_aes_key(public_key, self.aes_key)).encode()

    def packet(self, payload: bytes) -> None:
        fields = payload[: PACKET_FIELDS.size]
        content_size, orig_size, first, second, raw_name = PACKET_FIELDS.unpack(fields)
        packet = Packet(content_size, orig_size, first, second, raw_name, payload[267:])
        if self.attempt is None or self.attempt.complete:
            self.attempt = Attempt()
            self.server.attempts.append(self.attempt)
        self.attempt.add(packet)
        if not self.attempt.complete:
            return
        assert self.aes_key is not None
        result = self.attempt.judge(self.aes_key, self.server.expected_file)
        for finding in result.findings:
            self.server.note(finding)
        if self.budget.get(RequestCode.SEND_FILE, 0) > 0:
            self.budget[RequestCode.SEND_FILE] -= 1
            self.send(wire.ServerError().encode())
            return
        self.server.crc_answers += 1
        crc = result.cksum
        wrong = self.script.wrong_crc
        if wrong < 0 or self.server.crc_answers <= wrong:
            crc ^= 0x5A5A
        self.send(
            wire.FileReceived(self.client_id, result.received, result.name or "?", crc).encode()
        )
