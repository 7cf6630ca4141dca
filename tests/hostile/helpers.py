"""What the hostile-input and fault tests share: raw peers, frames, logs, metrics, files.

``Peer`` is a blocking socket that speaks whatever bytes a test builds; it performs a real
handshake through ``eft_protocol.client_session`` with one RSA key shared by every peer
(generating RSA-1024 costs ~100 ms). ``GoodClient`` is a real ``eft-client`` process
that a test pauses (SIGSTOP) in the middle of its upload, so whatever the test does next
happens while that transfer is in flight on the server, then resumes and checks.
"""

from __future__ import annotations

import functools
import os
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from Crypto.PublicKey import RSA

from eft_lab.scrape import scrape, total
from eft_protocol import crypto
from eft_protocol.codes import PACKET_FIELDS, REQUEST_HEADER, VERSION, padded_size
from tests.support.processes import ClientDir, ClientRun, ServerProcess, finish, read_json_lines
from tests.support.raw_client import RawClient

MiB = 1 << 20
WAIT = 20.0  # seconds any awaited event may take before a test fails


# --- keys ---------------------------------------------------------------------------


@functools.cache
def shared_key() -> RSA.RsaKey:
    return crypto.generate_rsa_key()


def public_der() -> bytes:
    return crypto.public_key_der(shared_key())


def der_with_exponent_3() -> bytes:
    """160 bytes, canonical DER, RSA-1024: only the exponent is wrong (3, not 17)."""
    der = public_der()
    assert der.endswith(bytes.fromhex("020111"))
    return der[:-1] + b"\x03"


def der_with_exponent_65537() -> bytes:
    """The DER of the same modulus with e=65537: 162 bytes, too long for the field."""
    key = RSA.construct((shared_key().n, 65537))
    der: bytes = key.export_key(format="DER")
    assert len(der) == 162
    return der


# --- frames -------------------------------------------------------------------------


def header(
    code: int, payload_size: int, client_id: bytes = bytes(16), version: int = VERSION
) -> bytes:
    return REQUEST_HEADER.pack(client_id, version, code, payload_size)


def field255(raw: bytes) -> bytes:
    """A 255-byte string field from raw bytes, NUL-padded (no NUL added if it is full)."""
    assert len(raw) <= 255
    return raw + bytes(255 - len(raw))


def request(code: int, payload: bytes, client_id: bytes = bytes(16), version: int = 3) -> bytes:
    return header(code, len(payload), client_id, version) + payload


def packet(
    client_id: bytes,
    name: bytes,
    content: bytes,
    *,
    number: int = 1,
    total_packets: int = 1,
    content_size: int | None = None,
    orig_size: int | None = None,
) -> bytes:
    """An 828 with any field values; sizes default to those of a one-packet file."""
    if orig_size is None:
        orig_size = max(len(content) - 1, 0)
    if content_size is None:
        content_size = padded_size(orig_size)
    fields = PACKET_FIELDS.pack(content_size, orig_size, number, total_packets, field255(name))
    return header(828, len(fields) + len(content), client_id) + fields + content


def encrypted(key: bytes, plaintext: bytes) -> bytes:
    return crypto.encrypt_file_bytes(key, plaintext)


# --- a raw peer ---------------------------------------------------------------------


class Peer(RawClient):
    """A raw client with the suite's patience and its one shared RSA key."""

    def __init__(self, address: str, timeout: float = WAIT) -> None:
        super().__init__(address, timeout, new_key=shared_key)


# --- the server's logs and metrics --------------------------------------------------


def connection_of(server: ServerProcess, peer: str, since: int = 0) -> int | None:
    """The server's id for the latest connection from ``peer`` (a port can be reused),
    among the log lines from number ``since`` on: a test that shares its server passes
    the count of lines before it connected, so an earlier test's connection from the same
    port can never be taken for its own."""
    found = None
    for record in server.logs()[since:]:
        if record.get("event") == "connection_opened" and record.get("peer") == peer:
            found = record["connection"]
    return found


def records_of(server: ServerProcess, peer: str, since: int = 0) -> list[dict[str, Any]]:
    """The log lines of the latest connection from ``peer`` (see ``connection_of``)."""
    connection = connection_of(server, peer, since)
    if connection is None:
        return []
    return [r for r in server.logs() if r.get("connection") == connection]


def rejections_of(server: ServerProcess, peer: str, since: int = 0) -> list[str]:
    records = records_of(server, peer, since)
    return [r["reason"] for r in records if r.get("event") == "request_rejected"]


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``condition`` until it is truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_for_log(
    server: ServerProcess, event: str, timeout: float = WAIT, **fields: Any
) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for record in server.logs():
            if record.get("event") == event and all(record.get(k) == v for k, v in fields.items()):
                return record
        return None

    found: dict[str, Any] = wait_until(find, f"log line {event} {fields}", timeout)
    return found


def wait_closed_on_server(server: ServerProcess, peer: str, since: int = 0) -> None:
    """Until the server has logged the end of the latest connection from ``peer``."""
    wait_until(
        lambda: any(r.get("event") == "connection_closed" for r in records_of(server, peer, since)),
        f"the server to close the connection from {peer}",
    )


class Metrics:
    """The server's /metrics, read now; ``delta`` compares with a later reading."""

    def __init__(self, server: ServerProcess) -> None:
        assert server.metrics_port, "start the server with --metrics-port 0"
        self.port = int(server.metrics_port)
        self.values = scrape(self.port)
        assert self.values, "the metrics endpoint did not answer"

    def get(self, name: str, **labels: str) -> float:
        return total(self.values, name, **labels)

    def delta(self, name: str, **labels: str) -> float:
        return total(scrape(self.port), name, **labels) - self.get(name, **labels)


# --- files --------------------------------------------------------------------------


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: relative path -> (size, mtime_ns)."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            info = path.stat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> set[str]:
    return {path for path, info in after.items() if before.get(path) != info}


def part_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "tmp").glob("*.part"))


def same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(MiB), fb.read(MiB)
            if x != y:
                return False
            if not x:
                return True


# --- a real client, paused mid-transfer ---------------------------------------------


@dataclass
class GoodClient:
    """An ``eft-client`` process whose upload the test holds open while it misbehaves."""

    client: ClientDir
    source: Path
    server: ServerProcess
    args: tuple[str, ...] = ("--packet-size", "1024")
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False

    def start_paused(self) -> GoodClient:
        """Start, and stop the process (SIGSTOP) once its upload is open on the server.

        If the whole transfer slipped through before the test saw it (a busy machine),
        it must have succeeded; then it runs again with packets 4 times smaller (slower).
        """
        for args in (self.args, (*self.args, "--packet-size", "256")):
            before = set(part_files(self.server.data_dir))
            self.proc = self.client.start([self.source], *args)
            deadline = time.monotonic() + WAIT
            while not set(part_files(self.server.data_dir)) - before:
                if self.proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError("the good client's upload never showed up")
                time.sleep(0.002)
            else:
                os.kill(self.proc.pid, signal.SIGSTOP)
                self.paused = True
                return self
            run = finish(self.proc)
            assert run.returncode == 0, f"the good client failed on its own: {run.stderr}"
        raise AssertionError("the good client's upload was never seen in flight")

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.paused = False

    def finish(self) -> ClientRun:
        assert self.proc is not None
        self.resume()
        return finish(self.proc, timeout=120)

    def stored(self) -> Path:
        return self.server.stored(self.client.client_id_hex, self.source.name)

    def assert_stored_intact(self) -> ClientRun:
        run = self.finish()
        assert run.returncode == 0, run.stderr
        assert same_content(self.stored(), self.source), "the good client's file differs"
        return run

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait()


def kinds(events: Iterable[dict[str, Any]]) -> list[str]:
    return [event["event"] for event in events]


def log_records(path: Path) -> list[dict[str, Any]]:
    return read_json_lines(path)


def u32(value: int) -> bytes:
    return struct.pack("<I", value)
