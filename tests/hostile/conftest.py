"""One server for the whole table of bad inputs: each row runs against a server that has
already survived the rows before it, and checks that it still serves a real client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import ClientDir, ServerProcess

#: The table's server: metrics on, and limits low enough for a row to cross them.
HOSTILE_SERVER_ARGS = (
    "--metrics-port",
    "0",
    "--max-packet-payload",
    str(1 << 20),
    "--max-file-size",
    str(16 << 20),
)


@dataclass
class Hostile:
    server: ServerProcess
    base: Path  # everything the test and the server write lives under here
    outside: Path  # a directory beside the server's: hostile names aim at it
    good: ClientDir  # one identity: registers in the first row, reconnects after
    sources: Path

    @property
    def server_root(self) -> Path:
        return self.server.data_dir.parent


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    base = tmp_path_factory.mktemp("hostile")
    root = base / "server"
    root.mkdir()
    server = ServerProcess(root / "data", base / "server.log", args=HOSTILE_SERVER_ARGS)
    server.start()
    outside = base / "outside"
    outside.mkdir()
    sources = base / "sources"
    sources.mkdir()
    good = ClientDir(base / "clients" / "good", "good", server.address)
    try:
        yield Hostile(server, base, outside, good, sources)
    finally:
        server.stop()
