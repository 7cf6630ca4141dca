"""Many clients at once, in one process: ``python -m bench.load --server H:P --clients N``.

Every client is a full session: register, key exchange, one file, verdict. By default
(``--client lean``) each drives the client's own sans-IO session over a bare stream:
version 4 (``ClientSessionV4``, ``_lean_v4``) a real Noise handshake with the client's
own X25519 key (made before the timed run), a registration, the file hashed and sealed
for this session, the server's digest checked and its outcome read; version 3
(``ClientSession``, ``_lean_v3``) 825, 826 with one pre-made RSA key for all (RSA-1024
generation costs ~100 ms), the AES key unwrapped, the file encrypted in 256 KiB reads,
the CRC compared, 900 and 1604. What they skip is what the CLI client does for a
person (identity, pin and upload-id files, the file read from disk, progress events),
which cost this one process as much again per session (issue 22). ``--client cli``
runs the CLI client's ``run`` / ``run_v4`` instead.

Prints one JSON object: wall time, per-session latencies, failures, and this process's
own CPU (user + system): while the sessions ran, and in all (start-up, the payload, the
keys). It shares the machine's cores with the server, so its CPU is reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eft_client.progress import Reporter
from eft_client.settings import ClientSettings
from eft_client.transfer import READ_SIZE, run
from eft_client.transfer_loop import choose_aes_engines
from eft_client.transfer_v4 import run_v4
from eft_protocol import crypto
from eft_protocol.client_session import ClientSession, Reply
from eft_protocol.codes import AES_BLOCK_SIZE, RESPONSE_HEADER
from eft_protocol.noise import KeyPair
from eft_protocol.parser import NEED_DATA, ResponseParser
from eft_protocol.v4 import client as v4
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.records import CHUNK, CHUNK_PREFIX_SIZE
from eft_protocol.wire import Response

from .common import raise_nofile


async def _one(
    settings: ClientSettings, path: Path, key: Any, start: asyncio.Event, protocol: int
) -> float:
    await start.wait()
    began = time.perf_counter()
    if isinstance(key, _LeanClient) and protocol == 3:
        await _lean_v3(settings, key)
    elif isinstance(key, _LeanClient):
        await _lean_v4(settings, key)
    elif protocol == 4:
        await run_v4(settings, [path], Reporter())
    else:
        await run(settings, [path], Reporter(), new_key=lambda: key)
    return time.perf_counter() - began


class SessionFailed(Exception):
    """The lean session ended without the file stored and verified."""


async def _lean_v4(settings: ClientSettings, client: _LeanClient) -> None:
    """One version-4 session as the CLI client runs it for one small file (STREAM):
    handshake and registration, the file's metadata, record and 903 in one write, then
    the answers until its outcome. Raises unless the server stored it, digest matched."""
    room = client.room
    session = v4.ClientSessionV4(
        client.key, settings.name, register=True, check_server=lambda _print: None
    )
    reader, writer = await asyncio.open_connection(settings.host, settings.port)
    try:
        async with asyncio.timeout(settings.response_timeout):

            async def receive() -> v4.ReplyV4:
                header = await reader.readexactly(RESPONSE_HEADER.size)
                body = await reader.readexactly(session.payload_size(header))
                return session.receive(header, body)

            writer.write(session.start())
            reply = await receive()
            if reply.cookie:  # the server is under load: message 1 again, with it
                writer.writelines(reply.send)
                reply = await receive()
            writer.writelines(reply.send)  # message 3: the intent (825)
            if (await receive()).registered is None:
                raise SessionFailed("not registered")
            # The file as the CLI client sends it (read whole after the record prefix's
            # room), hashed and sealed for this session. Read once for every client:
            # the prefix each writes into the room is the same (file 1, chunk 1, final),
            # and sealing copies the room out before another session can touch it.
            size = len(room) - CHUNK_PREFIX_SIZE
            digest = file_digest(memoryview(room)[CHUNK_PREFIX_SIZE:]).digest()
            frames = [session.begin_stream_file("payload.bin", size, os.urandom(16))]
            frames += session.chunk_record_pieces(1, room)
            frames.append(session.commit_if(digest, sync_now=True))
            writer.writelines(frames)
            await writer.drain()
            while True:
                reply = await receive()
                if reply.file_verified:
                    return
                if reply.resend_file:
                    raise SessionFailed("the server's digest differed")
    finally:
        writer.close()


async def _lean_v3(settings: ClientSettings, client: _LeanClient) -> None:
    """One version-3 session as the CLI client runs it: 825, 826 with the (shared,
    pre-made) RSA key, the AES key unwrapped, the file encrypted and sent in 256 KiB
    reads, the CRC compared, 900, 1604. Raises unless the server confirmed the CRC."""
    session = ClientSession(settings.name, new_key=lambda: client.key)
    parser = ResponseParser()
    reader, writer = await asyncio.open_connection(settings.host, settings.port)
    try:
        async with asyncio.timeout(settings.response_timeout):

            async def receive() -> Reply:
                while (response := parser.next_event()) is NEED_DATA:
                    data = await reader.read(65536)
                    if not data:
                        raise SessionFailed("the server closed the connection")
                    parser.receive_data(data)
                assert isinstance(response, Response)
                reply = session.receive(response)
                if reply.server_error:
                    raise SessionFailed("server error (1607)")
                return reply

            writer.writelines(session.start())
            while not session.ready:
                writer.writelines((await receive()).send)
            payload = memoryview(client.room)
            sender = session.begin_file("payload.bin", len(payload), settings.packet_size)
            ciphertext = bytearray(READ_SIZE + AES_BLOCK_SIZE)  # reused, as the CLI's
            for start in range(0, len(payload), READ_SIZE):
                writer.writelines(
                    sender.feed_pieces(payload[start : start + READ_SIZE], ciphertext)
                )
                await writer.drain()  # the pieces are views of ``ciphertext``
            writer.writelines(sender.finish_pieces())
            await writer.drain()
            while True:
                reply = await receive()
                if reply.file_verified:
                    return
                if reply.resend_file:
                    raise SessionFailed("the server's CRC differed")
                writer.writelines(reply.send)
    finally:
        writer.close()


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    host, port = args.server.rsplit(":", 1)
    workdir = Path(args.workdir)
    path = workdir / "payload.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(args.size))
    key: Any = crypto.generate_rsa_key() if args.protocol == 3 else None
    lean = args.client == "lean"
    if lean and args.protocol == 3:
        choose_aes_engines()
        room = bytearray(path.read_bytes())
        rsa_key = key
    elif lean:
        choose_aes_engines()
        room = bytearray(CHUNK_PREFIX_SIZE) + path.read_bytes()  # one record (main checks)
    start = asyncio.Event()
    tasks = []
    for index in range(args.clients):
        if lean:  # version 4: each client its own key, made before the timed run
            key = _LeanClient(rsa_key if args.protocol == 3 else KeyPair.generate(), room)
        settings = ClientSettings(
            host=host,
            port=int(port),
            name=f"{args.prefix}-{index}",
            config_dir=workdir / f"client-{index}",
            connect_timeout=60.0,
            response_timeout=float(os.environ.get("BENCH_RESPONSE_TIMEOUT", "120")),
            retries=0,  # a failure is counted, not hidden by a retry
        )
        if not lean:
            settings.config_dir.mkdir(parents=True, exist_ok=True)
        tasks.append(asyncio.create_task(_one(settings, path, key, start, args.protocol)))
    if lean and args.protocol == 4:
        _touch_heap(args.clients, len(room))
    # The objects made so far live to the end: out of the collector's way. The
    # collector's passes over 1000 clients' objects are the shared process's cost.
    gc.collect()
    gc.freeze()
    cpu_before = _own_cpu()
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - began
    cpu_sessions = _own_cpu() - cpu_before
    latencies = [r for r in results if isinstance(r, float)]
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return {
        "protocol": args.protocol,
        "clients": args.clients,
        "size": args.size,
        "wall_seconds": wall,
        "latencies": latencies,
        "failures": len(errors),
        "errors": sorted(set(errors))[:10],
        "cpu_seconds_sessions": cpu_sessions,
    }


@dataclass(frozen=True)
class _LeanClient:
    key: Any  # version 4's KeyPair, or version 3's RSA key (one for all)
    #: The file, read once for every client (version 4: after the record prefix's room).
    room: bytearray


#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _reuse_freed_memory() -> None:
    """Keep freed megabytes in the heap for the next session. Each session's sealed
    record is a fresh 1 MiB object; by default glibc maps and unmaps such blocks (or
    trims the heap), so every session paid ~500 page faults and the kernel's zeroing
    (a tenth of this process's CPU, perf): a cost of 1000 clients in one process that
    separate clients do not share. glibc only; elsewhere nothing changes."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest
        libc.mallopt(_M_TRIM_THRESHOLD, 2 << 30)


def _touch_heap(clients: int, size: int) -> None:
    """Fault in, before the timed run, the heap the sessions' sealed records will use
    (each client holds one until the kernel has taken it): freed, it stays in the heap
    (``_reuse_freed_memory``), and the run does not pay the first touch of every page."""
    blocks = [b"\x01" * size for _ in range(clients)]
    del blocks


def _own_cpu() -> float:
    """This process's user + system CPU seconds so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--prefix", default="load")
    parser.add_argument("--protocol", type=int, choices=(3, 4), default=3)
    parser.add_argument(
        "--client",
        choices=("lean", "cli"),
        default="lean",
        help="the sans-IO session over a bare stream (lean), or the CLI client's run (cli)",
    )
    args = parser.parse_args()
    if args.client == "lean" and args.protocol == 4 and args.size > CHUNK:
        # The lean version-4 client streams its file as one record; a larger file takes
        # the resumable path, which only the CLI client drives.
        parser.error(
            f"--client lean sends version 4 files of at most {CHUNK} bytes: use --client cli"
        )
    raise_nofile()
    _reuse_freed_memory()
    try:
        import uvloop  # noqa: PLC0415 - as the CLI client runs

        result = uvloop.run(_main(args))
    except ImportError:
        result = asyncio.run(_main(args))
    result["cpu_seconds_total"] = _own_cpu()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
