"""RSA-1024 with exponent 17: what is demonstrated, and what is only argued.

Demonstrated: the keys on the wire (826) and on disk (me.info) are 1024-bit with e = 17,
and the protocol leaves no way out: the 826 payload is fixed at 415 bytes, so a server
must refuse a 2048-bit key or even a 1024-bit key with e = 65537 (162-byte DER). With
``--target`` we register a throwaway name and offer such a key: our server answers 1607.

Argued, not demonstrated: 1024-bit RSA gives about 80 bits of security; NIST has
disallowed it for key transport since 2014 and the 768-bit record (2009) puts 1024 bits
within reach of a well-funded attacker; we do not factor one here. The exponent 17 is
not exploitable as used: OAEP randomises every wrapping, so Håstad's broadcast attack
(the same message to e recipients without padding) and Coppersmith's stereotyped-message
attacks do not apply. We also check the recorded moduli for shared primes (bad key
generation); finding none is the expected outcome.

``--protocol 4``: we look for RSA the same way. In a recording, the keys in the clear
are the two ephemeral keys of each handshake (32 bytes each); the static keys travel
encrypted. me4.info holds an X25519 key. The server's static key is an X25519 key (we
complete a handshake to see it), and an RSA key offered in place of message 1's
ephemeral key gets the connection closed: there is no RSA to attack anywhere.
"""

from __future__ import annotations

import argparse
import math
import os
from itertools import combinations
from pathlib import Path

from Crypto.PublicKey import RSA

from eft_protocol.codes import RequestCode, ResponseCode
from eft_protocol.v4.handshake import OFFER_SIZE

from .common import Out, ServerLink, read_me_info
from .framing import name_request, raw_string, request
from .recording import load_sessions
from .v4 import V4Client, add_protocol_argument, v4_views, wait_closed

FINDING = "EFT-11"
SUMMARY = "RSA-1024, e=17, fixed by the wire format (key size checks; factoring argued)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", help="read public keys from its 826s")
    parser.add_argument("--me-info", help="read a client's key from me.info")
    parser.add_argument("--target", help="check whether the server accepts a stronger key")
    add_protocol_argument(parser)


async def refuses_stronger_key(target: str, out: Out) -> bool:
    link = await ServerLink.open(target)
    try:
        name = f"rsa-check-{os.urandom(3).hex()}"
        await link.send(name_request(bytes(16), RequestCode.REGISTER, name))
        registered = await link.receive()
        if registered.code != ResponseCode.REGISTERED:
            return False
        key = RSA.generate(1024, e=65537)  # noqa: S505 - only its DER size matters here
        stronger = key.public_key().export_key(format="DER")
        payload = raw_string(name) + stronger
        await link.send(request(registered.payload, RequestCode.SEND_PUBLIC_KEY, payload))
        answer = (await link.receive()).code
        out.step(f"offered RSA-1024 with e=65537 ({len(stronger)}-byte DER): {answer}")
        return answer != ResponseCode.PUBLIC_KEY_ACCEPTED
    finally:
        await link.close()


def _x25519(source: str, size: int) -> dict[str, object]:
    kind = "X25519" if size == 32 else f"{size}-byte key"
    return {"source": source, "type": kind, "bytes": size}


async def server_keys_v4(target: str, out: Out) -> tuple[dict[str, object], bool]:
    """The server's static key (by a handshake), and whether an RSA offer is refused."""
    client = await V4Client.open(target)
    try:
        await client.hello()
        assert client.noise is not None and client.noise.rs is not None
        static = _x25519(f"server static key {client.server_fingerprint}", len(client.noise.rs))
    finally:
        await client.close()
    link = await ServerLink.open(target)
    try:
        key = RSA.generate(1024, e=17)  # noqa: S505 - what version 3 uses, offered to v4
        der = key.public_key().export_key(format="DER")
        await link.send(request(bytes(16), RequestCode.SEND_PUBLIC_KEY, der, version=4))
        closed, frames = await wait_closed(link)
    finally:
        await link.close()
    out.step(f"offered an RSA-1024 key ({len(der)} bytes) as message 1", closed=closed)
    return static, closed and not frames


async def run_v4(args: argparse.Namespace, out: Out) -> bool:
    keys: list[dict[str, object]] = []
    if args.recording:
        for view in v4_views(load_sessions(Path(args.recording))):
            if view.hello is not None:
                # Message 1 is the ephemeral key, then the offer (revision 2).
                size = len(view.hello.payload) - OFFER_SIZE
                keys.append(_x25519(f"{view.conn}: client ephemeral", size))
            if view.server_hello is not None:
                keys.append(_x25519(f"{view.conn}: server ephemeral", 32))
    if args.me_info:
        line = Path(args.me_info).read_text().splitlines()[-1].strip()
        kind = line.split(":", 1)[0]  # x25519 or x25519-scrypt
        keys.append({"source": "me4.info", "type": "X25519" if "x25519" in kind else kind})
    rsa_refused = None
    if args.target:
        static, rsa_refused = await server_keys_v4(args.target, out)
        keys.append(static)
    for key in keys:
        out.step(f"{key['source']}: {key['type']}")
    weak = [k for k in keys if k["type"] != "X25519"]
    return out.result(
        bool(weak),
        f"{len(keys)} key(s), all X25519; no RSA on the wire, on disk or at the server"
        if not weak
        else f"{len(weak)} key(s) that are not X25519",
        keys=keys,
        weak_keys=weak,
        rsa_offer_refused=rsa_refused,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return await run_v4(args, out)
    keys: list[tuple[str, RSA.RsaKey]] = []
    if args.recording:
        for view in load_sessions(Path(args.recording)):
            if view.public_key:
                keys.append((f"826 of {view.name}", RSA.import_key(view.public_key)))
    if args.me_info:
        private = read_me_info(Path(args.me_info)).private_key
        assert private is not None
        keys.append(("me.info", private.public_key()))
    weak = []
    for source, key in keys:
        bits = key.size_in_bits()
        out.step(f"{source}: RSA-{bits}, e={key.e}")
        if bits < 2048:
            weak.append({"source": source, "bits": bits, "e": key.e})
    shared = [
        (a, b)
        for (a, ka), (b, kb) in combinations(keys, 2)
        if math.gcd(ka.n, kb.n) not in (1, ka.n)
    ]
    out.step(f"moduli sharing a prime: {len(shared)}")
    forced = await refuses_stronger_key(args.target, out) if args.target else None
    if not keys and forced is None:
        return out.result(False, "no key to look at: give --recording, --me-info or --target")
    return out.result(
        bool(weak) or bool(forced),
        f"{len(weak)} key(s) below 2048 bits; the server "
        + ("refuses" if forced else "accepts" if forced is False else "was not asked about")
        + " a stronger key",
        weak_keys=weak,
        server_refuses_stronger_key=forced,
        shared_primes=len(shared),
    )
