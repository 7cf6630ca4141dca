"""The version-3 client's own part (client/eft_client/transfer.py), in this process
against a server in the same event loop on 127.0.0.1: a first run registers and saves
me.info, sends a file larger than one read in pieces and sees it verified; a damaged
attempt (an outgoing filter flips a bit) is sent again; the next run reconnects; names
version 3 cannot carry stop the run before it connects."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from eft_client import transfer
from eft_client.errors import ConfigError, RegistrationRefused
from eft_client.progress import Reporter
from eft_client.settings import ClientSettings
from eft_lab.corrupting_proxy import StreamCorrupter, policy
from eft_protocol import crypto
from eft_protocol import errors as protocol_errors
from eft_server.app import Server
from eft_server.config import ServerConfig

KEY = crypto.generate_rsa_key(random.Random(5).randbytes)


class Recorder(Reporter):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def event(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [fields for k, fields in self.events if k == kind]


async def _runs(tmp_path: Path, files: list[Path]) -> tuple[Recorder, Recorder, Path]:
    server = Server(ServerConfig(data_dir=tmp_path / "server", host="127.0.0.1", port=0))
    await server.start()
    try:
        assert server.port is not None
        settings = ClientSettings("127.0.0.1", server.port, "vera", tmp_path / "client")
        first, second = Recorder(), Recorder()
        damage_once = policy("once")
        await transfer.run(
            settings,
            files,
            first,
            make_outgoing_filter=lambda: StreamCorrupter(damage_once).feed,
            new_key=lambda: KEY,
        )
        await transfer.run(settings, files[:1], second, new_key=lambda: KEY)
    finally:
        await server.shutdown()
    return first, second, tmp_path / "server" / "files"


def test_a_run_registers_sends_again_after_damage_and_the_next_reconnects(
    tmp_path: Path,
) -> None:
    (tmp_path / "client").mkdir()
    source = tmp_path / "big.bin"
    source.write_bytes(random.Random(9).randbytes(transfer.READ_SIZE + 1000))
    first, second, files = asyncio.run(_runs(tmp_path, [source]))
    registered = first.of("registered")
    assert len(registered) == 1 and registered[0]["name"] == "vera"
    client_id = registered[0]["client_id"]
    me_info = (tmp_path / "client" / "me.info").read_text().splitlines()
    assert me_info[:2] == ["vera", client_id], "me.info saved with the id the server gave"
    assert [m["action"] for m in first.of("crc_mismatch")] == ["sending it again"]
    verified = first.of("file_verified")
    assert len(verified) == 1 and verified[0]["attempt"] == 2
    assert (files / client_id / "big.bin").read_bytes() == source.read_bytes()
    assert second.of("reconnected") and not second.of("registered")
    assert second.of("file_verified")[0]["attempt"] == 1


@pytest.mark.parametrize("name", ["caf\u00e9.txt", "tab\there.txt", "x" * 255])
def test_a_name_version_3_cannot_carry_stops_the_run(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    settings = ClientSettings("127.0.0.1", 1, "vera", tmp_path)
    with pytest.raises(ConfigError, match="254 printable ASCII"):
        asyncio.run(transfer.run(settings, [path], Recorder()))


def test_a_refused_name_with_a_token_is_explained_as_either() -> None:
    with_token = transfer.Version3(
        ClientSettings("h", 1, "vera", Path("."), token=b"t"), Recorder()
    )
    turned = with_token.client_error(protocol_errors.NameTaken("1601"))
    assert isinstance(turned, RegistrationRefused) and "does not say which" in str(turned)
    without = transfer.Version3(ClientSettings("h", 1, "vera", Path(".")), Recorder())
    assert without.client_error(protocol_errors.NameTaken("1601")) is None
