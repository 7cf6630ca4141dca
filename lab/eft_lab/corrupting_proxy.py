"""A TCP proxy that flips one ciphertext bit in chosen file attempts.

It sits between an eft client and server on loopback and makes the CRC retry paths run
for real: the server decrypts a damaged file, its CRC differs, the client sends 901 and
the file again (or 902 on the 4th time). The flipped bit is in the file's first block,
so the padding stays valid and the damage shows as a CRC difference, not as 1607.

It can also cut the first connection after N bytes (``--cut-after``), to show that a
client reconnects and finishes.

Usage: ``eft-proxy --target HOST:PORT --corrupt once|always|never|0.25 [--cut-after N]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import struct
import sys
from collections.abc import Callable, Sequence

from eft_protocol import __version__
from eft_protocol.codes import PACKET_FIELDS, REQUEST_HEADER, RequestCode

_NUMBERS = struct.Struct("<HH")  # packet_number, total_packets inside the 828 fields
_NUMBERS_OFFSET = 8


class StreamCorrupter:
    """Follows the client-to-server framing and flips a bit where it is told to.

    ``should_corrupt`` is asked once per file attempt (an 828 numbered 0 or 1).
    """

    def __init__(self, should_corrupt: Callable[[], bool]) -> None:
        self.should_corrupt = should_corrupt
        self.corrupted_attempts = 0
        self._buffer = bytearray()
        self._need = REQUEST_HEADER.size
        self._phase = "header"
        self._remaining = 0
        self._flip_next = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        view = memoryview(data)
        while view:
            if self._phase in ("header", "fields"):
                take = min(self._need - len(self._buffer), len(view))
                self._buffer += view[:take]
                view = view[take:]
                if len(self._buffer) == self._need:
                    out += self._buffer
                    self._complete(bytes(self._buffer))
                    self._buffer.clear()
                continue
            take = min(self._remaining, len(view))
            chunk = bytearray(view[:take])
            view = view[take:]
            self._remaining -= take
            if self._phase == "content" and self._flip_next and chunk:
                chunk[0] ^= 0x01
                self._flip_next = False
                self.corrupted_attempts += 1
            out += chunk
            if self._remaining == 0:
                self._start_header()
        return bytes(out)

    def _start_header(self) -> None:
        self._phase, self._need = "header", REQUEST_HEADER.size

    def _complete(self, block: bytes) -> None:
        if self._phase == "header":
            _client_id, _version, code, payload_size = REQUEST_HEADER.unpack(block)
            if code == RequestCode.SEND_FILE and payload_size >= PACKET_FIELDS.size:
                self._phase, self._need = "fields", PACKET_FIELDS.size
                self._remaining = payload_size - PACKET_FIELDS.size
            else:
                self._phase, self._remaining = "skip", payload_size
            if self._phase == "skip" and payload_size == 0:
                self._start_header()
            return
        number, total = _NUMBERS.unpack_from(block, _NUMBERS_OFFSET)
        if min(number, total) <= 1:  # the first packet (1, or 0 for zero-based senders)
            self._flip_next = self.should_corrupt()
        self._phase = "content"
        if self._remaining == 0:
            self._start_header()


def policy(spec: str, rng: random.Random | None = None) -> Callable[[], bool]:
    """``once``, ``always``, ``never`` or a probability such as ``0.25``."""
    rng = rng or random.Random()
    if spec == "always":
        return lambda: True
    if spec == "never":
        return lambda: False
    if spec == "once":
        state = {"left": 1}

        def once() -> bool:
            if state["left"]:
                state["left"] -= 1
                return True
            return False

        return once
    rate = float(spec)
    if not 0.0 <= rate <= 1.0:
        raise ValueError("a corruption rate is between 0 and 1")
    return lambda: rng.random() < rate


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    transform: Callable[[bytes], bytes] | None,
) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(transform(data) if transform else data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # either side went away; the other pipe notices and closes too
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


class CorruptingProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        corrupt: str = "once",
        cut_after: int | None = None,
    ) -> None:
        self.target_host, self.target_port = target_host, target_port
        # One policy for the whole proxy: "once" means once across all connections.
        self.should_corrupt = policy(corrupt)
        self.corrupted_attempts = 0
        #: Cut the first connection once this many client bytes went through.
        self.cut_after = cut_after

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        corrupter = StreamCorrupter(self._decide)
        transform: Callable[[bytes], bytes] = corrupter.feed
        if self.cut_after is not None:
            transform = self._cutter(corrupter.feed, self.cut_after, writer, up_writer)
            self.cut_after = None
        forwarded = 0

        def counted(data: bytes) -> bytes:
            nonlocal forwarded
            out = transform(data)
            forwarded += len(out)
            return out

        await asyncio.gather(_pipe(reader, up_writer, counted), _pipe(up_reader, writer, None))
        print(json.dumps({"event": "closed", "client_bytes": forwarded}), flush=True)

    def _cutter(
        self,
        inner: Callable[[bytes], bytes],
        limit: int,
        *writers: asyncio.StreamWriter,
    ) -> Callable[[bytes], bytes]:
        """A transform that forwards ``limit`` bytes, then aborts both connections."""
        sent = 0

        def transform(data: bytes) -> bytes:
            nonlocal sent
            if sent + len(data) < limit:
                sent += len(data)
                return inner(data)
            for writer in writers:
                writer.transport.abort()
            print(json.dumps({"event": "cut", "after": sent}), flush=True)
            raise ConnectionResetError("cut by the proxy")

        return transform

    def _decide(self) -> bool:
        hit = self.should_corrupt()
        self.corrupted_attempts += hit
        return hit


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _main(args: argparse.Namespace) -> None:
    target_host, target_port = _address(args.target)
    listen_host, listen_port = _address(args.listen)
    proxy = CorruptingProxy(target_host, target_port, args.corrupt, args.cut_after)
    server = await asyncio.start_server(proxy.handle, listen_host, listen_port)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"event": "listening", "port": port, "target": args.target}), flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="eft-proxy", description=__doc__.splitlines()[0].replace("``", "")
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--target", required=True, help="the server, HOST:PORT")
    parser.add_argument("--listen", default="127.0.0.1:0", help="default 127.0.0.1:0 (any port)")
    parser.add_argument("--corrupt", default="once", help="once, always, never or a rate (0-1)")
    parser.add_argument(
        "--cut-after", type=int, help="abort the first connection after this many client bytes"
    )
    args = parser.parse_args(argv)
    try:
        policy(args.corrupt)
    except ValueError:
        parser.error(f"--corrupt: {args.corrupt!r} is not once, always, never or a rate 0-1")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
