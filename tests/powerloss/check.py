"""What a crash state must satisfy once the server has started on it.

The server runs in this process (the same ``Server`` the command runs: start-up
recovery, then listening on 127.0.0.1 port 0), is stopped, and the directory is read:

* each stored name holds one whole version that was sent under it, never a mix; once a
  version was acknowledged (1604), that one or a later one;
* the registry agrees with the disk: a row for each stored file of a known client, with
  its size and checksum (v3) or BLAKE3 digest (v4), and no row without its file;
* an acknowledged registration (v3 1602, v4 1600) is in the registry, and the server's
  version-4 key is the one its clients were shown;
* no temporary file and no half of a version-4 upload is left.
"""

from __future__ import annotations

import asyncio
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path

from eft_protocol.cksum import cksum
from eft_protocol.v4.file_digest import file_digest
from eft_server.app import Server
from eft_server.config import ServerConfig

from .crash_states import CrashState

_HEADER = struct.Struct("<BHI")


@dataclass
class Workload:
    """What the recorded clients had verified, in order, per version (over all their
    connections, in the order the connections were made)."""

    v3_client: bytes = b""
    v4_client: bytes = b""
    v3_files: list[tuple[str, bytes]] = field(default_factory=list)
    v4_files: list[tuple[str, bytes]] = field(default_factory=list)
    server_key: bytes = b""


def _answers(stream: bytes) -> list[tuple[int, bytes]]:
    out = []
    while len(stream) >= _HEADER.size:
        _version, code, size = _HEADER.unpack_from(stream)
        if len(stream) < _HEADER.size + size:
            break  # an answer cut by the crash point: not received
        out.append((code, stream[_HEADER.size : _HEADER.size + size]))
        stream = stream[_HEADER.size + size :]
    return out


@dataclass
class Told:
    """What the clients had been told when the power went."""

    v3_registered: bool = False
    v4_registered: bool = False
    v4_greeted: bool = False
    acked: dict[tuple[int, str], int] = field(default_factory=dict)  # versions acknowledged


def told(state: CrashState, work: Workload) -> Told:
    result = Told()
    received = {3: 0, 4: 0}  # files verified so far, over each version's connections
    for stream in state.answers:
        if not stream or stream[0] not in (3, 4):
            continue  # the event loop's own wake-up socket, not a client's connection
        version = stream[0]
        files = work.v3_files if version == 3 else work.v4_files
        waiting = False
        for code, _payload in _answers(stream):
            if version == 4 and code == 1602:
                result.v4_greeted = True  # message 2: the server's key was shown
            if code == 1600 and version == 4:
                result.v4_registered = True
            if code == 1602 and version == 3:
                result.v3_registered = True
            if code == 1603:
                waiting = True
            elif code == 1604 and waiting:
                name = files[received[version]][0]
                key = (version, name)
                result.acked[key] = result.acked.get(key, 0) + 1
                received[version] += 1
                waiting = False
    return result


def run_server(directory: Path) -> None:
    config = ServerConfig(host="127.0.0.1", port=0, data_dir=directory, shutdown_grace=0.1)

    async def start_and_stop() -> None:
        server = Server(config)
        await server.start()
        await server.shutdown()

    asyncio.run(start_and_stop())


def check(state: CrashState, directory: Path, work: Workload) -> list[str]:
    """The broken promises of this state (none: it is fine)."""
    problems: list[str] = []
    state.build(directory)
    try:
        run_server(directory)
    except Exception as exc:  # any failure to start is the finding
        return [f"the server did not start: {type(exc).__name__}: {exc}"]
    was = told(state, work)
    for version, client, files, base in (
        (3, work.v3_client, work.v3_files, directory / "files"),
        (4, work.v4_client, work.v4_files, directory / "v4" / "files"),
    ):
        for name in dict(files):
            versions = [content for n, content in files if n == name]
            path = base / client.hex() / name
            acked = was.acked.get((version, name), 0)
            content = path.read_bytes() if path.is_file() else None
            if content is None:
                if acked:
                    problems.append(f"v{version} {name}: acknowledged, and gone")
            elif content not in versions[max(acked - 1, 0) :]:
                known = content in versions
                problems.append(
                    f"v{version} {name}: "
                    + ("an older version than acknowledged" if known else "a mix or a torn file")
                )
    problems += _registry_problems(directory, work, was)
    leftovers = [str(p) for p in (directory / "tmp").glob("*") if p.is_file()]
    partial = directory / "v4" / "partial"
    for p in partial.glob("*/*"):
        pair = p.with_suffix(".json" if p.suffix == ".part" else ".part")
        if not pair.exists():
            leftovers.append(str(p))
    if leftovers:
        problems.append(f"left behind: {leftovers}")
    if was.v4_greeted and (directory / "server.key").read_bytes() != work.server_key:
        problems.append("the server's key changed: every pinned v4 client would refuse it")
    return problems


def _registry_problems(directory: Path, work: Workload, was: Told) -> list[str]:
    problems = []
    with sqlite3.connect(f"file:{directory / 'eft.sqlite3'}?mode=ro", uri=True) as db:
        clients = {bytes(r[0]): r[1] for r in db.execute("SELECT ID, PublicKey FROM clients")}
        clients_v4 = {bytes(r[0]) for r in db.execute("SELECT ClientID FROM clients_v4")}
        rows3 = {
            (bytes(c), n): (p, s, k)
            for c, n, p, s, k in db.execute("SELECT ID, FileName, PathName, Size, Cksum FROM files")
        }
        rows4 = {
            (bytes(c), n): (p, s, bytes(d))
            for c, n, p, s, d in db.execute(
                "SELECT ClientID, FileName, PathName, Size, Digest FROM files_v4"
            )
        }
    if was.v3_registered and clients.get(work.v3_client) is None:
        problems.append("v3: an acknowledged registration (1602) is not in the registry")
    if was.v4_registered and work.v4_client not in clients_v4:
        problems.append("v4: an acknowledged registration (1600) is not in the registry")
    for (_client, name), (path, size, value) in rows3.items():
        file = Path(path)
        if not file.is_file():
            problems.append(f"v3 row {name} without its file")
        elif (size, value) != (len(data := file.read_bytes()), cksum(data)):
            problems.append(f"v3 row {name}: size or cksum differ from the file")
    for (_client, name), (path, size, digest) in rows4.items():
        file = Path(path)
        if not file.is_file():
            problems.append(f"v4 row {name} without its file")
        elif (size, digest) != (len(data := file.read_bytes()), file_digest(data).digest()):
            problems.append(f"v4 row {name}: size or digest differ from the file")
    for file in (directory / "files").glob("*/*"):
        client = bytes.fromhex(file.parent.name)
        if client in clients and (client, file.name) not in rows3:
            problems.append(f"v3 file {file.name} without its row")
    for file in (directory / "v4" / "files").glob("*/*"):
        client = bytes.fromhex(file.parent.name)
        if client in clients_v4 and (client, file.name) not in rows4:
            problems.append(f"v4 file {file.name} without its row")
    return problems
