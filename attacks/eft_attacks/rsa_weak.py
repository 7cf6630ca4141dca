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
"""

from __future__ import annotations

import argparse
import math
import os
from itertools import combinations
from pathlib import Path

from Crypto.PublicKey import RSA

from eft_protocol.codes import RequestCode, ResponseCode

from .common import Out, ServerLink, read_me_info
from .framing import name_request, raw_string, request
from .recording import load_sessions

FINDING = "EFT-11"
SUMMARY = "RSA-1024, e=17, fixed by the wire format (key size checks; factoring argued)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recording", help="read public keys from its 826s")
    parser.add_argument("--me-info", help="read a client's key from me.info")
    parser.add_argument("--target", help="check whether the server accepts a stronger key")


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


async def run(args: argparse.Namespace, out: Out) -> bool:
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
