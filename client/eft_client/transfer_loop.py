"""The client's one transfer loop, for both protocol versions.

Connect (``link.py``), handshake, then each file: begin an attempt, stream it, act on
the answers until the file is verified or must be sent again; report every step; map
the core's failures to the client's errors (and so to exit codes); reconnect as
``reconnect.py`` says. What differs between versions is a ``Version`` adapter around
its sans-IO session: ``transfer.py`` (version 3, ``ClientSession``) and
``transfer_v4.py`` (version 4, ``ClientSessionV4``). The decisions (retry a file, give
up, register again) are the sessions'; this loop only carries them out.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from eft_protocol import engines
from eft_protocol import errors as protocol_errors

from .errors import (
    CannotConnect,
    ConfigError,
    ConnectionLost,
    IntegrityFailed,
    RegistrationRefused,
    ServerFailed,
)
from .link import Link, OutgoingFilter
from .progress import Reporter
from .reconnect import with_reconnects
from .settings import ClientSettings


class RetryLater(Exception):
    """A failure worth a new connection after the backoff (a version-4 1607 busy or
    internal, a second 1606); given up on as a server error when the window closes."""


class ReconnectAtOnce(Exception):
    """The session must start again on a new connection now, without a backoff (a
    version-4 1606: the next connection registers the key)."""


@dataclass(frozen=True)
class Answer:
    """A response as the loop acts on it, whichever version's session read it."""

    #: Frames to send now (possibly none): the verdict on the file's checksum.
    send: Sequence[bytes]
    #: Which attempt at the current file the answer is about.
    attempt: int
    #: The checksum differed: what follows ("sending it again" or "giving up (902)").
    mismatch: str | None = None
    #: The current file must be sent again: a new attempt begins.
    resend_file: bool = False
    file_verified: bool = False


class Attempt(Protocol):
    """One attempt at a file, begun on the connection."""

    #: ``file_started``'s fields besides file and size.
    started: dict[str, object]
    #: Events to report after ``file_started`` (version 4: resuming at 61%).
    notes: list[tuple[str, dict[str, object]]]

    async def stream(self, link: Link, reporter: Reporter) -> None:
        """Read the file and send it (the hot path: no copy per chunk)."""

    @property
    def checksum(self) -> object:
        """The file's checksum as sent, for ``file_verified``."""


class Version(Protocol):
    """One protocol version's side of the loop, around its sans-IO client session."""

    #: ``connected``'s fields besides host and port.
    connected: dict[str, object]
    #: The attempts send views of buffers they reuse (see ``Link``).
    sends_views: bool

    def check_file(self, path: Path) -> int:
        """The file's size, or a ``ConfigError`` if this version cannot send it."""

    def new_session(self) -> OutgoingFilter | None:
        """Make the session for the next connection (before connecting); its filter."""

    async def handshake(self, link: Link) -> None: ...

    async def begin_file(self, link: Link, path: Path, size: int) -> Attempt: ...

    async def answer(self, link: Link) -> Answer:
        """Read the next response and give it to the session."""

    def session_done(self) -> None:
        """Every file is verified: this connection ends well."""

    def client_error(self, exc: Exception) -> Exception | None:
        """This version's own meaning of a failure of its session, if it has one."""


def choose_aes_engines() -> None:
    """Pass the user's ``EFT_AES_BACKEND`` to the core, which reads no environment."""
    engines.configure(os.environ.get("EFT_AES_BACKEND", "auto"))


def file_size(path: Path) -> int:
    """The size of a regular file we can read, or a ``ConfigError``."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file")
    return info.st_size


async def transfer(
    settings: ClientSettings, remaining: list[Path], reporter: Reporter, version: Version
) -> None:
    """Send the files in ``remaining``, removing each once verified; raises
    ``ClientError``s. A connection that breaks is replaced as ``with_reconnects`` says;
    the file being sent goes again (from the server's resume point, in version 4)."""
    total = len(remaining)

    async def connect_once() -> None:
        while True:
            try:
                await _connection(settings, remaining, reporter, version)
                return
            except ReconnectAtOnce:
                continue

    try:
        await with_reconnects(
            settings,
            reporter,
            connect_once,
            (ConnectionLost, CannotConnect, RetryLater),
            progress=lambda: total - len(remaining),
        )
    except RetryLater as exc:
        raise ServerFailed(f"{exc}; giving up") from None


async def _connection(
    settings: ClientSettings, remaining: list[Path], reporter: Reporter, version: Version
) -> None:
    outgoing_filter = version.new_session()
    link = await Link.open(settings, outgoing_filter, sends_views=version.sends_views)
    reporter.event("connected", host=settings.host, port=settings.port, **version.connected)
    try:
        await version.handshake(link)
        streamed = getattr(version, "send_streamed", None)
        if streamed is not None:  # version 4 with STREAM: small files several at a time
            await streamed(link, remaining, reporter)
        while remaining:
            await _send_file(link, version, remaining[0], reporter)
            remaining.pop(0)
        version.session_done()
    except (protocol_errors.ProtocolError, protocol_errors.SessionFailed) as exc:
        raise version.client_error(exc) or _client_error(exc) from None
    finally:
        await link.close()


def _client_error(exc: Exception) -> Exception:
    """What a failure of either session means to the user (its exit code)."""
    if isinstance(exc, protocol_errors.NameTaken):
        return RegistrationRefused(str(exc))
    if isinstance(exc, protocol_errors.AttemptsExhausted):
        return IntegrityFailed(str(exc))
    if isinstance(exc, protocol_errors.ServerKeptFailing):
        return ServerFailed(f"{exc}; giving up")
    return ServerFailed(f"the server broke the protocol: {exc}")


async def _send_file(link: Link, version: Version, path: Path, reporter: Reporter) -> None:
    named = getattr(version, "stored_name", None)  # version 4: a folder's relative path
    name = named(path) if named is not None else path.name
    on_verified = getattr(version, "on_verified", None)
    while True:
        size = version.check_file(path)
        attempt = await version.begin_file(link, path, size)
        reporter.event("file_started", file=name, size=size, **attempt.started)
        for event, fields in attempt.notes:
            reporter.event(event, file=name, **fields)
        try:
            await attempt.stream(link, reporter)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        while True:
            answer = await version.answer(link)
            if answer.mismatch:
                reporter.event(
                    "crc_mismatch", file=name, attempt=answer.attempt, action=answer.mismatch
                )
            await link.send(answer.send)
            if answer.resend_file:
                break
            if answer.file_verified:
                overall = on_verified(path, size) if on_verified is not None else {}
                reporter.event(
                    "file_verified",
                    file=name,
                    size=size,
                    cksum=attempt.checksum,
                    attempt=answer.attempt,
                    **overall,
                )
                return
