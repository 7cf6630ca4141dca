"""The handshake floor's servers (bench.handshake_floor): what the bench compares the
eft server's CPU per handshake with must really do the handshake, and only that."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.handshake_floor import PROLOGUE, SIZES, FloorServer, handshake
from eft_protocol.noise import HandshakeState, KeyPair

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["loop", "noise"])
def floor(request: pytest.FixtureRequest) -> Iterator[FloorServer]:
    server = FloorServer(request.param).start()
    try:
        yield server
    finally:
        server.stop()
    assert server.proc is not None and server.proc.poll() is not None


def test_each_floor_server_answers_full_handshakes_and_its_cpu_is_read(
    floor: FloorServer,
) -> None:
    key = KeyPair.generate()
    floor.mark()

    async def twenty() -> None:
        for _ in range(20):
            await handshake(floor.address, floor.kind, key)

    asyncio.run(twenty())
    usage = floor.usage()
    assert usage.cpu_seconds >= usage.system_seconds >= 0
    assert usage.peak_rss > 0


async def _with_message_3(address: str, first: bytes, third: bytes) -> tuple[bytes, bytes]:
    """Message 1, its answer, then ``third`` as message 3: the answer and whatever the
    server sends before it closes (nothing, if it resets the connection)."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(len(first).to_bytes(2, "big") + first)
        second = await reader.readexactly(int.from_bytes(await reader.readexactly(2), "big"))
        writer.write(len(third).to_bytes(2, "big") + third)
        writer.write_eof()
        try:
            after = await reader.read()
        except ConnectionResetError:
            after = b""
        return second, after
    finally:
        writer.close()


def test_the_noise_floor_does_the_real_handshake() -> None:
    """A message 3 that does not belong to the handshake (the right size, no valid key
    or tag) gets no welcome: the floor computes the DH and checks the tags, it does not
    just answer the sizes. The next, real handshake is welcomed."""
    server = FloorServer("noise").start()
    try:
        state = HandshakeState(initiator=True, static=KeyPair.generate(), prologue=PROLOGUE)
        forged = bytes(SIZES["message 3"])
        second, after = asyncio.run(_with_message_3(server.address, state.write_message(), forged))
        assert len(second) == SIZES["message 2"]
        assert after == b""
        asyncio.run(handshake(server.address, "noise", KeyPair.generate()))
    finally:
        server.stop()


def test_a_floor_server_of_no_known_kind_is_refused_with_its_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.handshake_floor", "bare"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "usage: python -m bench.handshake_floor loop|noise" in done.stderr
