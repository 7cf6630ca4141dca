"""The version-4 client's own part (client/eft_client/transfer_v4.py): stored names
checked before connecting, each 1607 decision turned into its error, a 1606 answered
by registering once, and — in this process, against a server in the same event loop on
127.0.0.1 — a run that registers, pins the server, sends a small file streamed and a
large one in chunks, keeps no upload id once verified, and reconnects next time."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from eft_client import transfer_v4 as t4
from eft_client.errors import (
    ConfigError,
    RegistrationRefused,
    ServerFailed,
    ServerNoRoom,
    ServerStorageFailed,
)
from eft_client.identity_v4 import IdentityV4
from eft_client.known_servers import ServerPins
from eft_client.progress import Reporter
from eft_client.settings import ClientSettings
from eft_client.transfer_loop import ReconnectAtOnce, RetryLater
from eft_client.upload_ids import UploadIds
from eft_protocol.noise import KeyPair
from eft_protocol.v4 import client as v4
from eft_protocol.v4 import records as rec
from eft_server.app import Server
from eft_server.config import ServerConfig


class Recorder(Reporter):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def event(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


# --- names and refusals, no server ---------------------------------------------------


def test_a_stored_name_is_normalised_and_a_bad_one_stops_the_run(tmp_path: Path) -> None:
    assert t4._stored_name(tmp_path / "e\u0301t\u00e9.txt", None) == "\u00e9t\u00e9.txt"
    assert t4._stored_name(tmp_path / "x", "dir/y.txt") == "dir/y.txt"
    with pytest.raises(ConfigError, match=r"section 6\.3"):
        t4._stored_name(tmp_path / "x", "../escape")
    with pytest.raises(ConfigError, match="--as names one file; 2 were given"):
        t4._stored_names([tmp_path / "a", tmp_path / "b"], "c")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (rec.ErrorCode.BUSY, RetryLater),
        (rec.ErrorCode.INTERNAL, RetryLater),
        (rec.ErrorCode.STORAGE, ServerStorageFailed),
        (rec.ErrorCode.REGISTRATION_CLOSED, RegistrationRefused),
        (rec.ErrorCode.BAD_FILE_NAME, ConfigError),
        (rec.ErrorCode.NO_SPACE, ServerNoRoom),
        (rec.ErrorCode.OVER_QUOTA, ServerNoRoom),
        (rec.ErrorCode.BAD_REQUEST, ServerFailed),
    ],
)
def test_each_1607_ends_the_run_its_own_way(error: int, expected: type[Exception]) -> None:
    turned = t4._server_error(v4.RefusedByServer(error, "why"))
    assert type(turned) is expected
    assert "why" in str(turned)


def test_a_registration_refusal_is_explained_in_words() -> None:
    refused = v4.RefusedByServer(
        rec.ErrorCode.REGISTRATION_CLOSED, "registration refused: no_token"
    )
    turned = t4._server_error(refused)
    assert isinstance(turned, RegistrationRefused)
    assert "--token-file" in str(turned)


def _version(tmp_path: Path, reporter: Reporter, *, unsaved: bool) -> t4.Version4:
    settings = ClientSettings("127.0.0.1", 1, "u", tmp_path)
    identity = IdentityV4("u", KeyPair.generate())
    return t4.Version4(
        settings,
        reporter,
        identity,
        unsaved=unsaved,
        passphrase=None,
        pins=ServerPins(tmp_path / "known_servers", "127.0.0.1:1"),
        uploads=UploadIds(tmp_path / "uploads.json", "127.0.0.1:1"),
    )


def test_an_unknown_key_registers_at_once_then_a_second_refusal_waits(tmp_path: Path) -> None:
    reporter = Recorder()
    version = _version(tmp_path, reporter, unsaved=False)
    assert isinstance(version.client_error(v4.UnknownIdentity("1606")), ReconnectAtOnce)
    assert version.register_next and reporter.kinds() == ["reconnect_denied"]
    assert isinstance(version.client_error(v4.UnknownIdentity("1606")), RetryLater)
    version.session_done()
    assert not version.register_next
    assert version.client_error(ValueError("not ours")) is None
    not_v4 = version.client_error(v4.NotVersion4("a version-3 server", version_3=True))
    assert isinstance(not_v4, ServerFailed) and "--protocol 3" in str(not_v4)


def test_totals_count_files_and_bytes_done() -> None:
    totals = t4.Totals(files=2, bytes=30)
    assert totals.done(10) == {
        "files_done": 1,
        "files_total": 2,
        "bytes_done": 10,
        "bytes_total": 30,
    }
    assert totals.done(20)["bytes_done"] == 30


# --- a whole run against a server in this process -------------------------------------


async def _runs(tmp_path: Path, files: list[Path]) -> tuple[Recorder, Recorder, Path]:
    server = Server(ServerConfig(data_dir=tmp_path / "server", host="127.0.0.1", port=0))
    await server.start()
    try:
        assert server.port is not None
        settings = ClientSettings("127.0.0.1", server.port, "walter", tmp_path / "client")
        first, second = Recorder(), Recorder()
        await t4.run_v4(settings, files, first)
        await t4.run_v4(settings, files[:1], second)
    finally:
        await server.shutdown()
    return first, second, tmp_path / "server"


def test_a_run_registers_pins_sends_both_ways_and_the_next_one_reconnects(
    tmp_path: Path,
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    small, large = sources / "small.txt", sources / "large.bin"
    small.write_bytes(b"hello, server\n")
    large.write_bytes(random.Random(7).randbytes(2 * rec.CHUNK + 5))
    first, second, data_dir = asyncio.run(_runs(tmp_path, [small, large]))
    kinds = first.kinds()
    assert kinds.index("server_pinned") < kinds.index("registered")
    verified = {fields["file"]: fields for kind, fields in first.events if kind == "file_verified"}
    assert set(verified) == {"small.txt", "large.bin"}
    assert verified["large.bin"]["size"] == large.stat().st_size
    assert max(f["files_done"] for f in verified.values()) == 2
    stored = {path.name: path for path in (data_dir / "v4" / "files").rglob("*") if path.is_file()}
    assert stored["small.txt"].read_bytes() == small.read_bytes()
    assert stored["large.bin"].read_bytes() == large.read_bytes()
    pins = (tmp_path / "client" / "known_servers").read_text().split()
    assert len(pins) == 2 and pins[1].startswith("SHA256:")
    uploads = tmp_path / "client" / "uploads.json"
    assert not uploads.exists() or "large.bin" not in uploads.read_text(), "forgotten once verified"
    assert "reconnected" in second.kinds() and "registered" not in second.kinds()
    assert "server_pinned" not in second.kinds(), "pinned once"


def test_a_bad_name_stops_before_connecting(tmp_path: Path) -> None:
    settings = ClientSettings("127.0.0.1", 1, "-starts-with-a-dash", tmp_path)
    with pytest.raises(ConfigError, match="a version-4 name"):
        asyncio.run(t4.run_v4(settings, [tmp_path], Recorder()))
    with pytest.raises(ConfigError, match="--as names one file, not a folder"):
        asyncio.run(
            t4.run_v4(
                ClientSettings("127.0.0.1", 1, "ok", tmp_path),
                [tmp_path],
                Recorder(),
                t4.V4Options(stored_as="x"),
            )
        )
