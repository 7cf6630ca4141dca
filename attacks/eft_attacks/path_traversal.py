"""Path traversal through ``file_name``: try to write outside the client's directory.

We register a throwaway client and upload a small file under each of a list of
hostile names (``../``, ``..\\``, absolute paths, drive letters, NTFS streams, device
names, trailing dots). The server may refuse a name (1607) or store it. With
``--data-dir`` (lab access to the server's disk) we then look for the uploads outside
``files/<our id>/``: success if one escaped. Without it the attack can only report
which names the server accepted.

``--protocol 4``: the same names in the metadata record of a registered identity of
ours (our client refuses to send them; we build the record by hand). A version-4 file
name is a relative path checked component by component (no ``..``, ``.``, empty or
absolute parts, no backslash, no device name), so the server answers each hostile one
with 1607 (error 2, bad file name) and the session goes on; we look for escapes under
``v4/files/<our id>/``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from eft_protocol import crypto
from eft_protocol.codes import RequestCode, ResponseCode

from .common import Out, own_session
from .framing import name_request, one_packet_attempt
from .v4 import add_protocol_argument, own_identity

FINDING = "EFT-14"
SUMMARY = "hostile file names (../, absolute, \\, devices) against the server's storage"

NAMES = [
    "../{t}.txt",
    "../../{t}.txt",
    "../../../{t}.txt",
    "..\\..\\{t}.txt",
    "/tmp/{t}.txt",  # noqa: S108 - a hostile name, not a file we open
    "sub/../../{t}.txt",
    "....//{t}.txt",
    "..%2f{t}.txt",
    "C:\\{t}.txt",
    "C:{t}.txt",
    "{t}.txt::$DATA",
    "..",
    ".",
    "CON",
    "nul.txt",
    "{t}.txt.",
    "{t}.txt ",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    parser.add_argument("--data-dir", help="the server's data directory, to look for escapes")
    parser.add_argument("--as", dest="own_name", default="traversal", help="our own name")
    add_protocol_argument(parser)


def escaped(data_dir: Path, own: Path, token: str) -> list[str]:
    roots = [data_dir.parent, Path("/tmp")]  # noqa: S108 - where "/tmp/..." names would land
    found = set()
    for root in roots:
        pattern = "**/*" if root != Path("/tmp") else "*"  # noqa: S108
        for path in root.glob(pattern):
            if token in path.name and own not in path.parents:
                found.add(str(path))
    return sorted(found)


async def upload_v4(
    args: argparse.Namespace, token: str, out: Out
) -> tuple[Path, dict[str, object]]:
    client = await own_identity(args.target, f"{args.own_name}-{os.urandom(3).hex()}")
    accepted: list[str] = []
    refused: list[str] = []
    answers: dict[str, int] = {}  # name -> the server's last answer
    try:
        # A control: a plain name must be stored, or the refusals below mean nothing.
        control = await client.upload(f"{token}.txt", f"{token} control\n".encode())
        out.step(f"control {token}.txt: {control}")
        for template in NAMES:
            name = template.format(t=token)
            answer = await client.upload(name, f"{token} {name}\n".encode())
            answers[name] = answer
            (accepted if answer == ResponseCode.ACKNOWLEDGED else refused).append(name)
            out.step(f"{name!r}: {'stored' if answer == ResponseCode.ACKNOWLEDGED else answer}")
    finally:
        await client.close()
    own = Path(args.data_dir or ".") / "v4" / "files" / client.client_id.hex()
    fields = {"accepted": accepted, "refused": refused, "token": token, "answers": answers}
    return own, {**fields, "control": control}


async def run(args: argparse.Namespace, out: Out) -> bool:
    token = f"eft-escape-{os.urandom(4).hex()}"
    if args.protocol == 4:
        own, fields = await upload_v4(args, token, out)
        return verdict(args, own, token, fields, out)
    session = await own_session(args.target, f"{args.own_name}-{os.urandom(3).hex()}")
    link, client_id = session.link, session.client_id
    accepted: list[str] = []
    refused: list[str] = []
    try:
        for template in NAMES:
            name = template.format(t=token)
            ciphertext = crypto.encrypt_file_bytes(session.aes_key, f"{token} {name}\n".encode())
            await link.send(one_packet_attempt(client_id, name, ciphertext))
            answer = (await link.receive()).code
            if answer == ResponseCode.FILE_RECEIVED:
                await link.send(name_request(client_id, RequestCode.CRC_OK, name))
                answer = (await link.receive()).code
            (accepted if answer == ResponseCode.ACKNOWLEDGED else refused).append(name)
            out.step(f"{name!r}: {'stored' if answer == ResponseCode.ACKNOWLEDGED else answer}")
    finally:
        await link.close()
    details: dict[str, object] = {"accepted": accepted, "refused": refused, "token": token}
    own = Path(args.data_dir or ".") / "files" / client_id.hex()
    return verdict(args, own, token, details, out)


def verdict(
    args: argparse.Namespace, own: Path, token: str, fields: dict[str, object], out: Out
) -> bool:
    if not args.data_dir:
        return out.result(
            False, "cannot tell where accepted names landed without --data-dir", **fields
        )
    escapes = escaped(Path(args.data_dir), own, token)
    inside = sorted(p.name for p in own.glob(f"*{token}*"))
    if escapes:
        return out.result(
            True, f"{len(escapes)} upload(s) landed outside {own}", escaped=escapes, **fields
        )
    return out.result(
        False,
        f"nothing escaped: accepted names were stored as {inside} inside the client's directory",
        stored_as=inside,
        **fields,
    )
