"""Secrets in logs: does anything a reader of the logs holds give away a key, a
passphrase or a file's content?

Logs are read by more people than keys are (operators, log shippers, support tickets,
CI artefacts). This attack plays such a reader (A5 on the logs only): it scans the
files given with ``--scan`` (a server's log at ``--log-level debug``, a client's
``--json`` output and stderr) for every encoding of the secrets it is told of:

* ``--identity FILE``: a client's ``me.info``/``priv.key`` or ``me4.info``/``priv4.key``
  (every line but the name and the public id: the key, as written and decoded);
* ``--server-key FILE``: a server's ``server.key``;
* ``--secret HEX``: raw key material learnt elsewhere (an AES key an impostor handed
  out, ``eft-attack impostor``'s ``aes_keys``);
* ``--text STRING``: a passphrase;
* ``--content FILE``: an uploaded file (its first 64 bytes).

Each secret is looked for as raw bytes, lower- and upper-case hex and Base64 (and the
first 24 characters of any long text form, in case a log truncates). Success: any
found. ``--protocol`` changes nothing: the question is the same for both versions, the
tests feed it each version's logs.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
from dataclasses import dataclass
from pathlib import Path

from .common import AttackError, Out
from .v4 import add_protocol_argument

FINDING = "EFT-25"
SUMMARY = "scan logs and --json output for keys, passphrases and file contents"
PREFIX = 24  # characters of a long text form that still identify it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scan", action="append", required=True, help="a log to read")
    parser.add_argument("--identity", action="append", default=[], help="a client key file")
    parser.add_argument("--server-key", action="append", default=[], help="a server.key")
    parser.add_argument("--secret", action="append", default=[], help="key material, hex")
    parser.add_argument("--text", action="append", default=[], help="a passphrase")
    parser.add_argument("--content", action="append", default=[], help="an uploaded file")
    add_protocol_argument(parser)


@dataclass(frozen=True)
class Needle:
    what: str
    form: str
    data: bytes


def forms(what: str, secret: bytes) -> list[Needle]:
    """Every way a log could carry ``secret``."""
    hexed = secret.hex()
    encoded = base64.b64encode(secret).decode()
    needles = [
        Needle(what, "raw", secret),
        Needle(what, "hex", hexed.encode()),
        Needle(what, "HEX", hexed.upper().encode()),
        Needle(what, "base64", encoded.encode()),
        Needle(what, "hex prefix", hexed[:PREFIX].encode()),
        Needle(what, "base64 prefix", encoded[:PREFIX].encode()),
    ]
    return [n for n in needles if len(n.data) >= 8]


def text_forms(what: str, text: str) -> list[Needle]:
    """A secret kept as text (a key line): the text, its prefix, and what it decodes to."""
    needles = [Needle(what, "as written", text.encode())]
    body = text.rsplit(":", 1)[-1]  # "x25519:...", "x25519-scrypt-n17:...": the Base64
    if len(body) > PREFIX:
        needles.append(Needle(what, "prefix as written", body[:PREFIX].encode()))
    with contextlib.suppress(binascii.Error, ValueError):  # not Base64: the text is all
        needles += forms(what + " (decoded)", base64.b64decode(body, validate=True))
    return needles


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AttackError(f"cannot read {path}: {exc}") from None


def needles_of(args: argparse.Namespace) -> list[Needle]:
    needles: list[Needle] = []
    for path in args.identity:
        lines = _read(path).decode(errors="replace").splitlines()
        public = {lines[0].strip()} if len(lines) >= 3 else set()  # the name
        for line in (line.strip() for line in lines):
            is_id = len(line) == 32 and all(c in "0123456789abcdefABCDEF" for c in line)
            if line and line not in public and not is_id:
                needles += text_forms(f"{Path(path).name} key", line)
    for path in args.server_key:
        needles += text_forms("server.key", _read(path).decode(errors="replace").strip())
    for value in args.secret:
        try:
            needles += forms("key material", bytes.fromhex(value))
        except ValueError:
            raise AttackError(f"--secret {value!r} is not hex") from None
    for text in args.text:
        needles.append(Needle("passphrase", "as written", text.encode()))
    for path in args.content:
        head = _read(path)[:64]
        if len(head) >= 8:
            needles += forms(f"content of {Path(path).name}", head)
    return needles


async def run(args: argparse.Namespace, out: Out) -> bool:
    needles = needles_of(args)
    if not needles:
        raise AttackError("no secret to look for: give --identity, --secret, --text ...")
    out.step(f"looking for {len(needles)} forms of secrets in {len(args.scan)} file(s)")
    found: list[dict[str, str]] = []
    for path in args.scan:
        text = _read(path)
        lowered = text.lower()
        for needle in needles:
            haystack = lowered if needle.form == "hex" else text
            if needle.data in haystack:
                found.append({"file": path, "secret": needle.what, "form": needle.form})
                out.step(f"{path}: {needle.what} ({needle.form})")
    if found:
        return out.result(True, f"{len(found)} secret(s) found in the logs", found=found)
    return out.result(False, "no key, passphrase or file content in the logs", found=[])
