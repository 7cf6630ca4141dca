"""The client driver: a connection, the session's requests and replies, files streamed.

``eft_protocol.client_session`` decides; this module connects, reads and writes with
timeouts, reads files in pieces, saves me.info when told, and reports progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from Crypto.PublicKey import RSA

from eft_protocol import errors as protocol_errors
from eft_protocol.client_session import ClientSession, Reply
from eft_protocol.codes import AES_BLOCK_SIZE
from eft_protocol.parser import NEED_DATA, ResponseParser
from eft_protocol.wire import Response

from . import config, identity
from .errors import (
    CannotConnect,
    ConfigError,
    ConnectionLost,
    IntegrityFailed,
    RegistrationRefused,
    ServerFailed,
)
from .progress import Reporter
from .reconnect import with_reconnects
from .settings import ClientSettings

#: Plaintext read from the file at a time. It and its ciphertext (two reused buffers)
#: stay in a core's L2 cache; 1 MiB pieces encrypted measurably slower.
READ_SIZE = 256 * 1024


OutgoingFilter = Callable[[bytes], bytes]


class _Link:
    """One TCP connection carrying frames out and responses in."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        outgoing_filter: OutgoingFilter | None = None,
    ):
        self.reader, self.writer, self.timeout = reader, writer, timeout
        # ``send`` returns only once the kernel has taken every byte, so a caller may
        # reuse the buffers it sent from (the transport keeps views, not copies).
        writer.transport.set_write_buffer_limits(high=0)
        self.parser = ResponseParser()
        self.outgoing_filter = outgoing_filter

    @classmethod
    async def open(
        cls, settings: ClientSettings, outgoing_filter: OutgoingFilter | None = None
    ) -> _Link:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(settings.host, settings.port), settings.connect_timeout
            )
        except TimeoutError:
            raise CannotConnect(
                f"no answer from {settings.host}:{settings.port} in {settings.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise CannotConnect(
                f"cannot connect to {settings.host}:{settings.port}: {exc.strerror or exc}"
            ) from None
        return cls(reader, writer, settings.response_timeout, outgoing_filter)

    async def send(self, frames: Sequence[bytes | memoryview]) -> None:
        """Write frames, or pieces of frames in order, with one call; then drain."""
        if not frames:
            return
        if self.outgoing_filter is not None:
            frames = [self.outgoing_filter(bytes(frame)) for frame in frames]
        try:
            # writelines, not a join: the kernel gathers the pieces, Python copies nothing.
            self.writer.writelines(frames)
            # Bounded: a server that stops reading (a full TCP window) would otherwise
            # hold the client here for ever (EFT-21).
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except TimeoutError:
            raise ConnectionLost(
                f"the server did not take our data in {self.timeout:g} s"
            ) from None
        except (ConnectionError, OSError, RuntimeError) as exc:
            raise ConnectionLost(f"the connection broke while sending: {exc}") from None

    async def receive(self) -> Response:
        # One deadline for the whole answer, not one per read: a server that trickles
        # a byte at a time would otherwise hold us for its size times the timeout.
        deadline = asyncio.get_running_loop().time() + self.timeout
        while (response := self.parser.next_event()) is NEED_DATA:
            left = deadline - asyncio.get_running_loop().time()
            try:
                data = await asyncio.wait_for(self.reader.read(4096), max(left, 0))
            except TimeoutError:
                raise ConnectionLost(f"the server did not answer in {self.timeout:g} s") from None
            except (ConnectionError, OSError, RuntimeError) as exc:
                raise ConnectionLost(f"the connection broke: {exc}") from None
            if not data:
                raise ConnectionLost("the server closed the connection")
            self.parser.receive_data(data)
        return response

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):  # already broken: nothing to do
            await self.writer.wait_closed()


async def run(
    settings: ClientSettings,
    files: Sequence[Path],
    reporter: Reporter,
    *,
    make_outgoing_filter: Callable[[], OutgoingFilter] | None = None,
    new_key: Callable[[], RSA.RsaKey] | None = None,
) -> None:
    """Connect, register or reconnect, and send every file; raises ``ClientError``s.

    A connection that breaks is replaced as ``reconnect.with_reconnects`` says: the new
    session reconnects (827) and sends the unfinished file again from its start
    (version 3 cannot resume). Files already verified are not sent again.

    ``make_outgoing_filter`` gives each connection a filter that sees every byte it
    sends, in order: the lab uses it to damage chosen attempts on purpose. ``new_key``
    replaces RSA key generation at registration (load generators share one key).
    """
    for path in files:
        _check_sendable(path)
    remaining = list(files)

    async def connect_once() -> None:
        outgoing_filter = make_outgoing_filter() if make_outgoing_filter else None
        await _session(settings, remaining, reporter, outgoing_filter, new_key)

    await with_reconnects(
        settings, reporter, connect_once, progress=lambda: len(files) - len(remaining)
    )


async def _session(
    settings: ClientSettings,
    remaining: list[Path],
    reporter: Reporter,
    outgoing_filter: OutgoingFilter | None,
    new_key: Callable[[], RSA.RsaKey] | None = None,
) -> None:
    """One connection: handshake, then the files in ``remaining``, removing each verified."""
    me_info = settings.files.identity_dir / config.ME_INFO
    known = identity.read_identity(me_info)
    if known is not None and not config.check_name_matches(
        known.name, settings.name, me_info, settings.re_register
    ):
        reporter.event("identity_ignored", name=known.name)  # set aside once replaced
        known = None
    session = ClientSession(settings.name, known, new_key=new_key)
    link = await _Link.open(settings, outgoing_filter)
    reporter.event("connected", host=settings.host, port=settings.port)
    try:
        await _handshake(link, session, settings, reporter)
        while remaining:
            await _send_file(link, session, remaining[0], settings, reporter)
            remaining.pop(0)
    except protocol_errors.ProtocolError as exc:
        raise ServerFailed(f"the server broke the protocol: {exc}") from None
    except protocol_errors.RegistrationRefused as exc:
        raise RegistrationRefused(str(exc)) from None
    except protocol_errors.IntegrityFailed as exc:
        raise IntegrityFailed(str(exc)) from None
    except protocol_errors.ServerKeptFailing as exc:
        raise ServerFailed(f"{exc}; giving up") from None
    finally:
        await link.close()


async def _handshake(
    link: _Link, session: ClientSession, settings: ClientSettings, reporter: Reporter
) -> None:
    stored_id = session.client_id
    await link.send(session.start())
    while not session.ready:
        reply = session.receive(await link.receive())
        _report(reply, reporter)
        if reply.reconnect_denied and not settings.re_register:
            path = settings.files.identity_dir / config.ME_INFO
            raise identity.denied_identity(path, stored_id)  # docs/IDENTITY.md, EFT-19
        if reply.new_identity is not None:
            # Saved before the 826 that binds its key is sent; an old one is set aside.
            moved = identity.write_identity(settings.files.identity_dir, reply.new_identity)
            if moved:
                reporter.event("identity_set_aside", files=[str(path) for path in moved])
            client_id = reply.new_identity.client_id.hex()
            reporter.event("registered", name=settings.name, client_id=client_id)
        if reply.reconnected:
            reporter.event("reconnected", name=settings.name)
        await link.send(reply.send)


def _report(reply: Reply, reporter: Reporter) -> None:
    if reply.server_error:
        reporter.event("server_error", attempt=reply.server_error_retry)
    if reply.reconnect_denied:
        reporter.event("reconnect_denied")


async def _send_file(
    link: _Link, session: ClientSession, path: Path, settings: ClientSettings, reporter: Reporter
) -> None:
    name = path.name
    while True:
        size = _check_sendable(path)
        sender = session.begin_file(name, size, settings.packet_size)
        reporter.event(
            "file_started",
            file=name,
            size=size,
            content_size=sender.content_size,
            packets=sender.total_packets,
            attempt=session.file_attempts,
        )
        try:
            with open(path, "rb", buffering=0) as handle:
                # Two buffers for the whole file, plaintext and ciphertext: FileSender
                # keeps neither, and ``send`` returns once the kernel holds the bytes.
                buffer = bytearray(READ_SIZE)
                ciphertext = bytearray(READ_SIZE + AES_BLOCK_SIZE)
                view = memoryview(buffer)
                while count := handle.readinto(buffer):
                    await link.send(sender.feed_pieces(view[:count], ciphertext))
                    reporter.progress(sender.bytes_sent)
                await link.send(sender.finish_pieces())
        except ValueError as exc:  # the file changed size under us
            raise ConfigError(f"{path}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        reporter.progress(sender.bytes_sent)
        checksum = sender.cksum
        while True:
            reply = session.receive(await link.receive())
            _report(reply, reporter)
            if reply.crc_mismatch:
                action = "sending it again" if reply.resend_file else "giving up (902)"
                reporter.event("crc_mismatch", file=name, attempt=reply.attempt, action=action)
            await link.send(reply.send)
            if reply.resend_file:
                break
            if reply.file_verified:
                reporter.event(
                    "file_verified", file=name, size=size, cksum=checksum, attempt=reply.attempt
                )
                return


def _check_sendable(path: Path) -> int:
    name = path.name
    if not (name.isascii() and name.isprintable()) or len(name) > 254:
        raise ConfigError(
            f"{name!r}: version 3 carries file names of up to 254 printable ASCII characters"
        )
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not os.path.isfile(path):
        raise ConfigError(f"{path} is not a regular file")
    return info.st_size
