"""What every attack shares: output, addresses, a connection to the server, identities."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

from Crypto.PublicKey import RSA

from eft_protocol import crypto
from eft_protocol.client_session import ClientSession
from eft_protocol.codes import ResponseCode
from eft_protocol.wire import ResponseHeader, decode_response

# Re-exported: most attacks import AttackError from here (it lives in errors.py so that
# recording.py, which this module uses, can raise it without importing this one).
from .errors import AttackError as AttackError  # noqa: PLC0414 - mypy's re-export form
from .framing import Frame, Framer
from .recording import load_sessions

DEFAULT_TIMEOUT = 15.0


class Out:
    """Progress and the verdict: human lines, or JSON lines with ``--json``."""

    def __init__(self, json_mode: bool = False, stream: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.stream = stream or sys.stdout
        self.result_fields: dict[str, Any] | None = None

    def event(self, event: str, message: str = "", **fields: Any) -> None:
        if self.json_mode:
            record = {"event": event, **({"message": message} if message else {}), **fields}
            print(json.dumps(record, default=_jsonable), file=self.stream, flush=True)
            return
        extra = " ".join(f"{k}={_short(v)}" for k, v in fields.items())
        text = " ".join(part for part in (message, extra) if part)
        print(f"[{event}] {text}" if event != "step" else f"  {text}", file=self.stream, flush=True)

    def step(self, message: str, **fields: Any) -> None:
        self.event("step", message, **fields)

    def listening(self, port: int, **fields: Any) -> None:
        self.event("listening", f"listening on 127.0.0.1:{port}", port=port, **fields)

    def result(self, success: bool, message: str, **fields: Any) -> bool:
        self.result_fields = {"success": success, **fields}
        verdict = "SUCCEEDED" if success else "FAILED"
        self.event("result", f"attack {verdict}: {message}", success=success, **fields)
        return success


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _short(value: object) -> str:
    if isinstance(value, bytes):
        text = value.hex()
        return text if len(text) <= 64 else text[:64] + "..."
    return str(value)


def address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise AttackError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def preview(data: bytes, limit: int = 200) -> str:
    """Printable text of recovered bytes, for humans and logs."""
    text = data[:limit].decode("utf-8", errors="backslashreplace")
    return text + ("..." if len(data) > limit else "")


# --- talking to the server ------------------------------------------------------------


class Link(Protocol):
    """Where an attack sends requests and reads responses: a socket or a hijacked one."""

    async def send(self, *frames: bytes) -> None: ...

    async def receive(self, timeout: float = DEFAULT_TIMEOUT) -> Frame: ...


class ServerLink:
    """A plain TCP connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = Framer(requests=False)
        self.frames: list[Frame] = []

    @classmethod
    async def open(cls, target: str, timeout: float = DEFAULT_TIMEOUT) -> ServerLink:
        host, port = address(target)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise AttackError(f"cannot connect to {target}: {exc}") from None
        return cls(reader, writer)

    async def send(self, *frames: bytes) -> None:
        self.writer.writelines(frames)
        await self.writer.drain()

    async def receive(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        while not self.frames:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except TimeoutError:
                raise AttackError(f"no answer from the server in {timeout:g} s") from None
            except (ConnectionError, OSError) as exc:
                raise ConnectionClosed(f"connection broke: {exc}") from None
            if not data:
                raise ConnectionClosed("the server closed the connection")
            self.frames += self.framer.feed(data)
        return self.frames.pop(0)

    async def closed(self, timeout: float = 2.0) -> bool:
        """True if the server closes the connection (after any pending frames) in time."""
        try:
            while True:
                await self.receive(timeout)
        except ConnectionClosed:
            return True
        except AttackError:
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class ConnectionClosed(AttackError):
    """The server closed the connection (often the answer an attack is looking for)."""


async def expect(link: Link, *codes: int, timeout: float = DEFAULT_TIMEOUT) -> Frame:
    frame = await link.receive(timeout)
    if frame.code not in codes:
        wanted = " or ".join(str(c) for c in codes)
        raise UnexpectedAnswer(frame, f"server answered {frame.code}, expected {wanted}")
    return frame


class UnexpectedAnswer(AttackError):
    def __init__(self, frame: Frame, message: str) -> None:
        super().__init__(message)
        self.frame = frame


@dataclass
class Session:
    """An identity of the attacker's own, with the AES key its connection holds."""

    link: ServerLink
    name: str
    client_id: bytes
    aes_key: bytes
    private_key: RSA.RsaKey


async def own_session(target: str, name: str) -> Session:
    """Register ``name`` like a real client (825, 826) and keep the connection."""
    link = await ServerLink.open(target)
    session = ClientSession(name)
    await link.send(*session.start())
    while not session.ready:
        frame = await link.receive()
        if frame.code == ResponseCode.REGISTRATION_FAILED:
            raise AttackError(f"the name {name!r} is taken; choose another with --as")
        header = ResponseHeader(frame.version, frame.code, len(frame.payload))
        await link.send(*session.receive(decode_response(header, frame.payload)).send)
    assert session.identity is not None and session._aes_key is not None
    return Session(
        link, name, session.identity.client_id, session._aes_key, session.identity.private_key
    )


# --- a victim's identity ---------------------------------------------------------------


@dataclass
class Victim:
    name: str
    client_id: bytes
    private_key: RSA.RsaKey | None = None


def read_me_info(path: Path) -> Victim:
    """me.info as a thief finds it on the client's disk: name, id, private key."""
    try:
        lines = [line.rstrip("\0 \r\n\t") for line in path.read_text().splitlines()]
        key = crypto.import_private_key("".join(lines[2:]))
        return Victim(lines[0], binascii.unhexlify(lines[1]), key)
    except (OSError, ValueError, IndexError, binascii.Error) as exc:
        raise AttackError(f"cannot read {path}: {exc}") from None


def victim_from_args(args: Any) -> Victim:
    """--me-info, or --recording (what a passive eavesdropper saw), or --client-id/--name."""
    if getattr(args, "me_info", None):
        return read_me_info(Path(args.me_info))
    if getattr(args, "recording", None):
        for session in load_sessions(Path(args.recording)):
            if session.client_id and session.name:
                if args.name and session.name != args.name:
                    continue
                return Victim(session.name, session.client_id)
        raise AttackError(f"no client id and name in {args.recording}")
    if args.client_id and args.name:
        try:
            client_id = bytes.fromhex(args.client_id)
        except ValueError:
            client_id = b""
        if len(client_id) != 16:
            raise AttackError("--client-id must be 32 hex digits")
        return Victim(args.name, client_id)
    raise AttackError("say who the victim is: --recording, --me-info, or --client-id and --name")


def add_victim_arguments(parser: Any) -> None:
    group = parser.add_argument_group("the victim (what an eavesdropper learns from 825/1600)")
    group.add_argument("--recording", help="a recording made by 'eft-attack record'")
    group.add_argument("--me-info", help="the victim's me.info (a stolen disk)")
    group.add_argument("--client-id", help="the victim's client id, 32 hex digits")
    group.add_argument("--name", help="the victim's user name")


def add_target_argument(parser: Any, *, required: bool = True) -> None:
    parser.add_argument("--target", required=required, help="the eft server, HOST:PORT")


def add_listen_argument(parser: Any) -> None:
    parser.add_argument(
        "--listen", default="127.0.0.1:0", help="where the man in the middle listens"
    )


def keep_plaintext(out_dir: Path | None, name: str, plaintext: bytes) -> dict[str, object]:
    """What an attack records of a file it got in clear; saved under its base name in
    ``out_dir`` when one is given (the base name: the victim chose the name, not us)."""
    entry: dict[str, object] = {
        "file_name": name,
        "size": len(plaintext),
        "plaintext": preview(plaintext),
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / Path(name).name
        path.write_bytes(plaintext)
        entry["saved"] = str(path)
    return entry


T = TypeVar("T")

Conversation = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[T]]


async def impersonate_once(listen: str, timeout: float, out: Out, talk: Conversation[T]) -> T:
    """Pose as the server on ``listen`` until one victim's conversation ends.

    The first conversation to finish decides: its result, or the AttackError it raised,
    which is re-raised here. Later connections are still served but change nothing.
    """
    done: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            result = await talk(reader, writer)
            if not done.done():
                done.set_result(result)
        except AttackError as exc:
            if not done.done():
                done.set_exception(exc)
        finally:
            writer.close()

    host, port = address(listen)
    server = await asyncio.start_server(serve, host, port)
    out.listening(server.sockets[0].getsockname()[1])
    async with server:
        return await asyncio.wait_for(done, timeout)
