"""A hostile server: answers that stall, trickle, lie about sizes, or ask for the file
again, to see whether the client stays bounded in time, memory and data sent.

Version 3 lets anyone at the server's address play the server (EFT-20); this attack
plays it correctly (as ``impostor`` does) up to one point, then misbehaves as
``--answer`` says:

``stall``         accept every request, never answer it.
``trickle``       answer 825 (and every later request) one byte every ``--interval``
                  seconds: each read brings something, no answer is ever whole in time.
``stop-reading``  serve the handshake, then stop reading at the first 828 for
                  ``--hold`` seconds (the client's writes block on a full TCP window),
                  then read again and see whether the client is still there.
``huge-size``     answer 825 with a header that announces a 4 GiB payload.
``garbage``       answer 825 with bytes that are no eft answer (an HTTP status line).
``resend``        answer every finished file with 1607 three times, then with a wrong
                  CRC, and again: how often does the client send one file?
``resume-lie``    (version 4 only: version 3 cannot resume) claim to hold every chunk of
                  a new upload but the last: does the client skip what we never got, and
                  confirm the file?
``small-limit``   (version 4 only: version 3 announces no limit) say in message 2 that
                  we accept files of up to 16 bytes: does the client send a larger one
                  anyway? (What else it does, exit cleanly or crash, its exit code says.)

Success means the server got what a careful client would not give it: for ``stall``,
``trickle``, ``huge-size`` and ``garbage``, the client still holds the connection
``--hold`` seconds after the hostile answer began (it waits past its own timeout, or
for a payload that will never come); for ``stop-reading``, the client, still there
after a stall of ``--hold`` seconds, finishes its upload on the same connection and
confirms it (900; send a file larger than the kernel's buffers, so that the client's
writes really block); for ``resend``, the client sent one file more than
``MAX_SENDS_OF_A_CAREFUL_CLIENT`` times; for ``resume-lie``, the client confirmed a
file we hold only in part; for ``small-limit``, the client sent a file over our
limit. Give ``--hold`` well above the client's ``--timeout``.

``--protocol 4``: nothing reaches a version-4 client before the server's message 2,
whose header must be exactly version 4's and whose key is checked before the client
sends more than its first message: ``stall``, ``trickle``, ``huge-size`` and
``garbage`` apply to that answer. ``stop-reading``, ``resend`` and ``resume-lie`` need
later answers, which only a server the client trusts can give: for them the attack is a
whole version-4 server with a key of its own (its fingerprint is in the ``listening``
line); give it to the victim as ``--server-fingerprint``, as if the server it pinned
were the hostile one (the strongest case: the server is the attacker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field

from eft_protocol.codes import REQUEST_HEADER, RESPONSE_HEADER, RequestCode, ResponseCode
from eft_protocol.noise import KeyPair
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import server as v4server
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.handshake import SERVER_HELLO_SIZE, fingerprint, server_hello_header
from eft_protocol.wire import FileReceived, ServerError

from .common import AttackError, Out, add_listen_argument, address
from .framing import Frame
from .impostor import V3Impostor, read_request
from .v4 import add_protocol_argument

FINDING = "EFT-21"
SUMMARY = "a hostile server: stalls, resends, resume lies, bogus sizes (EFT-21 to EFT-24)"
MODES = (
    "stall",
    "trickle",
    "stop-reading",
    "huge-size",
    "garbage",
    "resend",
    "resume-lie",
    "small-limit",
)
#: small-limit: the largest file we say we accept.
SMALL_LIMIT = 16
#: The modes that need a later answer than message 2: in version 4, only a server the
#: client trusts gets that far.
TRUSTED_MODES = ("stop-reading", "resend", "resume-lie", "small-limit")
#: The most sends of one file we consider careful: the first and three retries.
MAX_SENDS_OF_A_CAREFUL_CLIENT = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_listen_argument(parser)
    parser.add_argument("--answer", choices=MODES, required=True, help="how to misbehave")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds to hold the client (20)")
    parser.add_argument(
        "--interval", type=float, default=0.5, help="trickle: seconds between bytes (0.5)"
    )
    add_protocol_argument(parser)


@dataclass
class Watch:
    """What one client connection did."""

    mode: str
    began: float | None = None  # when the hostile answer began
    closed_after: float | None = None  # seconds from then until the client closed
    continued: bool = False  # stop-reading: the upload went on after the hold
    sends: dict[str, int] = field(default_factory=dict)  # resend: attempts per file
    requests: list[int] = field(default_factory=list)

    def start(self) -> None:
        if self.began is None:
            self.began = time.monotonic()

    def closed(self) -> None:
        if self.began is not None and self.closed_after is None:
            self.closed_after = round(time.monotonic() - self.began, 2)


class HostileV3:
    def __init__(self, args: argparse.Namespace, out: Out) -> None:
        self.args, self.out = args, out
        self.normal = V3Impostor(out, None)
        self.watch = Watch(args.answer)
        self._errors_in_a_row = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode, watch = self.args.answer, self.watch
        stalled_here = False  # a client that gave up may come back on a new connection
        while True:
            try:
                frame = await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                watch.closed()
                return
            watch.requests.append(frame.code)
            if mode in ("stall", "trickle", "huge-size", "garbage"):
                watch.start()
                await self._misanswer(writer, frame)
                continue
            first_828 = frame.code == RequestCode.SEND_FILE and watch.began is None
            if mode == "stop-reading" and first_828:
                watch.start()
                stalled_here = True
                self.out.step(f"first 828: not reading for {self.args.hold:g} s")
                await asyncio.sleep(self.args.hold)
                self.out.step("reading again")
            if stalled_here and frame.code == RequestCode.CRC_OK:
                # Proof the client was there all along: it read our 1603 and confirmed.
                watch.continued = True
                self.out.step("the client's upload went on after the stall: 900")
            answer = self.normal.answer(frame)
            if mode == "resend" and frame.code == RequestCode.SEND_FILE and answer is not None:
                answer = self._resend(frame)
            if answer is not None:
                writer.write(answer)
                await writer.drain()

    async def _misanswer(self, writer: asyncio.StreamWriter, frame: Frame) -> None:
        mode = self.args.answer
        if mode == "stall":
            self.out.step(f"{frame.code}: not answering")
            return
        if mode == "huge-size":
            self.out.step(f"{frame.code}: answering 1600 that announces a 4 GiB payload")
            writer.write(RESPONSE_HEADER.pack(3, ResponseCode.REGISTERED, 0xFFFFFFFF) + bytes(16))
        elif mode == "garbage":
            self.out.step(f"{frame.code}: answering with an HTTP status line")
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        elif mode == "trickle":
            answer = self.normal.answer(frame) or b""
            self.out.step(f"{frame.code}: trickling the answer", bytes=len(answer))
            for byte in answer:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(self.args.interval)
            return
        await writer.drain()

    def _resend(self, frame: Frame) -> bytes:
        packet, _ = frame.packet()
        name = packet.file_name
        self.watch.sends[name] = self.watch.sends.get(name, 0) + 1
        if self._errors_in_a_row < 3:
            self._errors_in_a_row += 1
            self.out.step(f"{name!r} sent {self.watch.sends[name]} time(s): answering 1607")
            return ServerError().encode()
        self._errors_in_a_row = 0
        self.out.step(f"{name!r} sent {self.watch.sends[name]} time(s): a wrong CRC")
        assert self.normal.files
        size = int(str(self.normal.files[-1]["size"]))
        return FileReceived(self.normal.client_id, size, name, 0).encode()


async def _serve_v4(
    args: argparse.Namespace, out: Out, watch: Watch, reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:  # fmt: skip
    try:
        header = await reader.readexactly(REQUEST_HEADER.size)
        await reader.readexactly(REQUEST_HEADER.unpack(header)[-1])  # the ephemeral key
    except (asyncio.IncompleteReadError, ConnectionError):
        watch.closed()
        return
    watch.requests.append(RequestCode.REGISTER)
    watch.start()
    mode = args.answer
    out.step(f"message 1: answering as {mode!r} says")
    if mode == "huge-size":
        writer.write(RESPONSE_HEADER.pack(4, ResponseCode.REGISTERED, 0xFFFFFFFF) + bytes(16))
    elif mode == "garbage":
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    elif mode == "trickle":
        for byte in server_hello_header() + bytes(SERVER_HELLO_SIZE):  # well-formed outside
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(args.interval)
    await writer.drain()
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass
    watch.closed()


class TrustedV4:
    """Version 4, the modes that need a trusted server: a whole v4 server with a key of
    our own, which the victim is given as its server's fingerprint (the server it pinned
    is the hostile one). What it receives, it keeps in memory only."""

    def __init__(self, args: argparse.Namespace, out: Out, watch: Watch) -> None:
        self.args, self.out, self.watch = args, out, watch
        self.key = KeyPair.generate()
        self.fingerprint = fingerprint(self.key.public)
        self.registry = MemoryRegistry()
        self.sent_from: list[int] = []  # resume-lie: the first chunk each attempt sent
        self.confirmed_short: list[str] = []  # files confirmed that we hold only in part

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limit = SMALL_LIMIT if self.args.answer == "small-limit" else 2**63
        # One file at a time (no STREAM): the scenarios lie about resume points and verdicts.
        session = v4server.ServerSessionV4(
            self.key, self.registry, max_file_size=limit, stream=False
        )
        upload = bytearray()
        name = ""
        stalled_here = False
        while True:
            try:
                header = await reader.readexactly(REQUEST_HEADER.size)
                size = session.payload_size(header)
                payload = await reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.watch.closed()
                return
            except Exception as exc:  # a header our session refuses: end as it would
                self.out.step(f"refused: {exc}")
                return
            code = int.from_bytes(header[17:19], "little")
            self.watch.requests.append(code)
            uploading = session.state is v4server.ServerStateV4.UPLOADING
            if self.args.answer == "stop-reading" and uploading and self.watch.began is None:
                self.watch.start()
                stalled_here = True
                self.out.step(f"first chunk: not reading for {self.args.hold:g} s")
                await asyncio.sleep(self.args.hold)
                self.out.step("reading again")
            if stalled_here and code == RequestCode.CRC_OK:
                self.watch.continued = True
                self.out.step("the client's upload went on after the stall: 900")
            pending = list(session.receive(header, payload, time.time()))
            while pending:
                effect = pending.pop(0)
                if isinstance(effect, v4server.SendFrame):
                    writer.write(effect.frame)
                    await writer.drain()
                elif isinstance(effect, v4server.Close):
                    return
                elif isinstance(effect, v4server.OpenUpload):
                    upload, name = bytearray(), effect.name
                    held = 0
                    if self.args.answer == "resume-lie":
                        held = 1 << 32  # "I hold it all but the last chunk"
                        self.out.step(f"{effect.name!r}: claiming we hold all but its end")
                    pending[:0] = session.upload_ready(held)
                elif isinstance(effect, v4server.WriteChunk):
                    if not upload:
                        self.sent_from.append(effect.index)
                    upload += effect.data
                elif isinstance(effect, v4server.FinishUpload):
                    digest = file_digest(bytes(upload)).digest()
                    if self.args.answer == "resend":
                        self.watch.sends[name] = self.watch.sends.get(name, 0) + 1
                        digest = bytes(32)  # never the client's: "send it again"
                        self.out.step(f"{name!r} sent {self.watch.sends[name]} time(s): "
                                      "a wrong digest")  # fmt: skip
                    pending[:0] = session.upload_complete(digest, time.time())
                elif isinstance(effect, v4server.CommitUpload):
                    self.out.step(f"the client confirmed {name!r}", held=len(upload))
                    if len(upload) < effect.size:
                        self.confirmed_short.append(name)


async def run(args: argparse.Namespace, out: Out) -> bool:
    if args.answer == "resume-lie" and args.protocol == 3:
        raise AttackError("version 3 has no resume: every attempt sends the whole file")
    if args.answer == "small-limit" and args.protocol == 3:
        raise AttackError("version 3 announces no file size limit")
    hostile = HostileV3(args, out)
    watch = hostile.watch
    trusted = TrustedV4(args, out, watch) if args.protocol == 4 else None
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            if trusted is not None and args.answer in TRUSTED_MODES:
                await trusted.serve(reader, writer)
            elif trusted is not None:
                await _serve_v4(args, out, watch, reader, writer)
            else:
                await hostile.serve(reader, writer)
        except (ConnectionError, OSError):
            watch.closed()
        except asyncio.CancelledError:
            pass  # let go at the end of the hold: the end of this handler, not an error
        finally:
            writer.close()
            if not done.done():
                done.set_result(None)

    host, port = address(args.listen)
    server = await asyncio.start_server(serve, host, port)
    listener = server.sockets[0]
    # A small receive buffer (inherited by accepted sockets): a stop in reading fills
    # the client's TCP window sooner.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    extra = {"fingerprint": trusted.fingerprint} if trusted is not None else {}
    out.listening(listener.getsockname()[1], answer=args.answer, **extra)
    async with server:
        deadline = args.hold if args.answer in ("stall", "trickle", "huge-size", "garbage") \
            else args.timeout  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), deadline)
        for task in handlers:  # a client still held: let it go
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
    fields = {
        "answer": args.answer,
        "closed_after": watch.closed_after,
        "requests": watch.requests,
        "sends": watch.sends,
        "hold": args.hold,
    }
    if args.answer == "resume-lie":
        assert trusted is not None
        short = trusted.confirmed_short
        return out.result(
            bool(short),
            f"the client confirmed {short} though we hold only the end"
            if short
            else "the client never confirmed a file we hold only in part",
            sent_from=trusted.sent_from,
            confirmed_short=short,
            **fields,
        )
    if args.answer == "small-limit":
        over = RequestCode.SEND_FILE in watch.requests
        return out.result(
            over,
            f"the client sent a file over our {SMALL_LIMIT}-byte limit"
            if over
            else f"the client sent nothing over our {SMALL_LIMIT}-byte limit",
            **fields,
        )
    if args.answer == "resend":
        most = max(watch.sends.values(), default=0)
        return out.result(
            most > MAX_SENDS_OF_A_CAREFUL_CLIENT,
            f"the client sent one file {most} time(s) on our word",
            most=most,
            **fields,
        )
    if args.answer == "stop-reading":
        return out.result(
            watch.continued,
            "the client waited out the stall and went on"
            if watch.continued
            else "the client gave up during the stall",
            continued=watch.continued,
            **fields,
        )
    held = watch.began is not None and watch.closed_after is None
    return out.result(
        held,
        f"the client still held the connection after {args.hold:g} s"
        if held
        else f"the client closed {watch.closed_after} s after the hostile answer began",
        **fields,
    )
