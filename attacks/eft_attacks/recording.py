"""Recordings of sessions, and what can be read out of them.

Format (JSON lines, one object a line, flushed as it goes so other programs can read a
recording that is still growing)::

    {"type": "meta", "target": "127.0.0.1:1256", "started": 1700000000.0}
    {"t": 0.0012, "conn": 1, "dir": "open", "peer": "127.0.0.1:50000"}
    {"t": 0.0015, "conn": 1, "dir": "c2s", "data": "<hex>"}    client to server bytes
    {"t": 0.0301, "conn": 1, "dir": "s2c", "data": "<hex>"}    server to client bytes
    {"t": 0.0420, "conn": 1, "dir": "close", "side": "client"}

``t`` is seconds since the recording started. ``load_sessions`` turns each connection
into a ``SessionView``: frames in both directions, merged in time order, with the
identity, the wrapped AES keys and each file attempt with its ciphertext and answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from eft_protocol.codes import RequestCode, ResponseCode

from .errors import AttackError
from .framing import Frame, Framer


class Recorder:
    """Writes what a proxy sees. ``path=None`` records nothing."""

    def __init__(self, path: Path | None, target: str = "") -> None:
        self._file: TextIO | None = None
        self._start = time.monotonic()
        if path is not None:
            try:
                self._file = open(path, "w", encoding="ascii")  # noqa: SIM115 - closed in close()
            except OSError as exc:  # exit 3 with the reason, not a traceback
                raise AttackError(f"cannot write the recording {path}: {exc}") from None
            self._write({"type": "meta", "target": target, "started": time.time()})

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def _now(self) -> float:
        return round(time.monotonic() - self._start, 6)

    def opened(self, conn: int, peer: str) -> None:
        self._write({"t": self._now(), "conn": conn, "dir": "open", "peer": peer})

    def data(self, conn: int, direction: str, data: bytes) -> None:
        self._write({"t": self._now(), "conn": conn, "dir": direction, "data": data.hex()})

    def closed(self, conn: int, side: str) -> None:
        self._write({"t": self._now(), "conn": conn, "dir": "close", "side": side})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class Attempt:
    """One attempt at a file: its 828s in order, and what the server and client said."""

    file_name: str
    orig_size: int
    content_size: int
    packets: list[Frame] = field(default_factory=list)
    key_index: int = -1  # which of the session's wrapped keys encrypted it
    answer: Frame | None = None  # 1603 or 1607
    verdict: Frame | None = None  # 900, 901 or 902

    @property
    def ciphertext(self) -> bytes:
        return b"".join(frame.packet()[1] for frame in self.packets)

    @property
    def complete(self) -> bool:
        first, _ = self.packets[0].packet()
        last, _ = self.packets[-1].packet()
        number, total = sorted((last.number, last.total))
        return number == (total - 1 if min(first.number, first.total) == 0 else total)

    @property
    def cksum(self) -> int | None:
        """The server's CRC of the plaintext, if it answered 1603."""
        if self.answer is None or self.answer.code != ResponseCode.FILE_RECEIVED:
            return None
        return self.answer.file_received().cksum

    @property
    def verified(self) -> bool:
        return self.verdict is not None and self.verdict.code == RequestCode.CRC_OK


@dataclass
class SessionView:
    conn: int
    peer: str = ""
    events: list[tuple[float, Frame]] = field(default_factory=list)  # both directions
    name: str | None = None
    client_id: bytes | None = None
    public_key: bytes | None = None  # the 826's DER
    wrapped_keys: list[tuple[int, bytes]] = field(default_factory=list)  # (1602/1605, key)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def requests(self) -> list[Frame]:
        return [f for _, f in self.events if f.is_request]

    @property
    def responses(self) -> list[Frame]:
        return [f for _, f in self.events if not f.is_request]


_VERDICT_CODES = (RequestCode.CRC_OK, RequestCode.CRC_RETRY, RequestCode.CRC_GIVE_UP)


def read_records(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except OSError as exc:
        raise AttackError(f"cannot read the recording {path}: {exc}") from None
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line still being written
    return records


def load_sessions(path: Path) -> list[SessionView]:
    """Every recorded connection, in the order they opened."""
    framers: dict[int, tuple[Framer, Framer]] = {}
    sessions: dict[int, SessionView] = {}
    for record in read_records(path):
        if "conn" not in record:
            continue
        conn = record["conn"]
        view = sessions.setdefault(conn, SessionView(conn))
        requests, responses = framers.setdefault(
            conn, (Framer(requests=True), Framer(requests=False))
        )
        if record["dir"] == "open":
            view.peer = record.get("peer", "")
        elif record["dir"] in ("c2s", "s2c"):
            framer = requests if record["dir"] == "c2s" else responses
            for frame in framer.feed(bytes.fromhex(record["data"])):
                view.events.append((record["t"], frame))
    for view in sessions.values():
        view.events.sort(key=lambda item: (item[0], not item[1].is_request))
        analyse(view)
    return [sessions[conn] for conn in sorted(sessions)]


def analyse(view: SessionView) -> SessionView:
    """Fill in identity, keys and attempts from ``view.events`` (version-3 connections;
    a version-4 one is read by ``v4.v4_view``)."""
    if view.events and view.events[0][1].version == 4:
        return view
    current: Attempt | None = None
    waiting_answer: list[Attempt] = []
    waiting_verdict: list[Attempt] = []
    for _, frame in view.events:
        if frame.is_request:
            code = frame.code
            if code in (RequestCode.REGISTER, RequestCode.RECONNECT, RequestCode.SEND_PUBLIC_KEY):
                view.name = frame.name_field()
                if code != RequestCode.REGISTER:
                    view.client_id = frame.client_id
                if code == RequestCode.SEND_PUBLIC_KEY:
                    view.public_key = frame.payload[255:]
            elif code == RequestCode.SEND_FILE and len(frame.payload) >= 267:
                packet, _ = frame.packet()
                restart = current is not None and not current.complete
                if restart:
                    assert current is not None
                    first, _ = current.packets[0].packet()
                    restart = min(packet.number, packet.total) <= min(first.number, first.total)
                if current is None or current.complete or restart:
                    if current is not None and not current.complete:
                        view.attempts.remove(current)  # abandoned half way: not a file
                    current = Attempt(packet.file_name, packet.orig_size, packet.content_size)
                    current.key_index = len(view.wrapped_keys) - 1
                    view.attempts.append(current)
                current.packets.append(frame)
                if current.complete:
                    waiting_answer.append(current)
            elif code in _VERDICT_CODES and waiting_verdict:
                waiting_verdict.pop(0).verdict = frame
            continue
        code = frame.code
        if code == ResponseCode.REGISTERED:
            view.client_id = frame.payload[:16]
        elif code in (ResponseCode.PUBLIC_KEY_ACCEPTED, ResponseCode.RECONNECTED):
            view.client_id = frame.payload[:16]
            view.wrapped_keys.append((code, frame.payload[16:]))
        elif code in (ResponseCode.FILE_RECEIVED, ResponseCode.SERVER_ERROR) and waiting_answer:
            attempt = waiting_answer.pop(0)
            attempt.answer = frame
            if code == ResponseCode.FILE_RECEIVED:
                waiting_verdict.append(attempt)
    return view


def all_attempts(sessions: list[SessionView]) -> list[tuple[SessionView, Attempt]]:
    return [(view, attempt) for view in sessions for attempt in view.attempts]
