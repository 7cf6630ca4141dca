"""The version-3 client: ``ClientSession`` on the one transfer loop.

``eft_protocol.client_session`` decides; ``transfer_loop`` connects, sends, reads and
reports. This module is what only version 3 has: reading me.info for each connection
and saving it when told, the 825-827 handshake, responses cut out of the byte stream by
``ResponseParser``, and files read in pieces that ``FileSender`` encrypts into 828s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from Crypto.PublicKey import RSA

from eft_protocol import errors as protocol_errors
from eft_protocol.client_session import ClientSession, Reply
from eft_protocol.codes import AES_BLOCK_SIZE
from eft_protocol.file_sender import FileSender
from eft_protocol.parser import NEED_DATA, ResponseParser
from eft_protocol.wire import Response

from . import config, identity
from .errors import ConfigError, RegistrationRefused
from .link import Link, OutgoingFilter
from .progress import Reporter
from .settings import ClientSettings
from .transfer_loop import Answer, choose_aes_engines, file_size, transfer

#: Plaintext read from the file at a time. It and its ciphertext (two reused buffers)
#: stay in a core's L2 cache; 1 MiB pieces encrypted measurably slower.
READ_SIZE = 256 * 1024


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
    choose_aes_engines()
    for path in files:
        _check_sendable(path)
    version = Version3(settings, reporter, make_outgoing_filter, new_key)
    await transfer(settings, list(files), reporter, version)


class Version3:
    """Version 3's side of the transfer loop (``transfer_loop.Version``)."""

    sends_views = True  # FileSender's packets are views of the reused ciphertext buffer
    session: ClientSession  # the current connection's (``new_session``)
    parser: ResponseParser

    def __init__(
        self,
        settings: ClientSettings,
        reporter: Reporter,
        make_outgoing_filter: Callable[[], OutgoingFilter] | None = None,
        new_key: Callable[[], RSA.RsaKey] | None = None,
    ) -> None:
        self.connected: dict[str, object] = {}  # ``connected``'s own fields
        self.settings, self.reporter = settings, reporter
        self.make_outgoing_filter, self.new_key = make_outgoing_filter, new_key

    def check_file(self, path: Path) -> int:
        return _check_sendable(path)

    def new_session(self) -> OutgoingFilter | None:
        settings = self.settings
        me_info = settings.files.identity_dir / config.ME_INFO
        known = identity.read_identity(me_info)
        if known is not None and not config.check_name_matches(
            known.name, settings.name, me_info, settings.re_register
        ):
            self.reporter.event("identity_ignored", name=known.name)  # set aside once replaced
            known = None
        self.session = ClientSession(
            settings.name, known, new_key=self.new_key, token=settings.token
        )
        self.parser = ResponseParser()
        return self.make_outgoing_filter() if self.make_outgoing_filter else None

    async def receive(self, link: Link) -> Reply:
        deadline = link.answer_deadline()
        while (response := self.parser.next_event()) is NEED_DATA:
            self.parser.receive_data(await link.read_some(deadline))
        assert isinstance(response, Response)
        reply = self.session.receive(response)
        if reply.server_error:
            self.reporter.event("server_error", attempt=reply.server_error_retry)
        if reply.reconnect_denied:
            self.reporter.event("reconnect_denied")
        return reply

    async def handshake(self, link: Link) -> None:
        session, settings, reporter = self.session, self.settings, self.reporter
        stored_id = session.client_id
        await link.send(session.start())
        while not session.ready:
            reply = await self.receive(link)
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

    async def begin_file(self, link: Link, path: Path, size: int) -> FileAttempt3:
        sender = self.session.begin_file(path.name, size, self.settings.packet_size)
        return FileAttempt3(path, sender, self.session.file_attempts)

    async def answer(self, link: Link) -> Answer:
        reply = await self.receive(link)
        mismatch = None
        if reply.crc_mismatch:
            mismatch = "sending it again" if reply.resend_file else "giving up (902)"
        return Answer(
            reply.send,
            reply.attempt,
            mismatch,
            resend_file=reply.resend_file,
            file_verified=reply.file_verified,
        )

    def session_done(self) -> None:
        pass

    def client_error(self, exc: Exception) -> Exception | None:
        if isinstance(exc, protocol_errors.NameTaken) and self.settings.token:
            # Version 3 has one refusal, 1601, for a taken name and a policy's no.
            return RegistrationRefused(
                f"{exc}: the name is taken, or the server refused the invitation token "
                "(unknown, expired, used up, revoked, or not for this name); version 3's "
                "1601 does not say which"
            )
        return None  # the shared meanings are all version 3 has


class FileAttempt3:
    """One attempt at a file: read in pieces, encrypted and framed by ``FileSender``."""

    def __init__(self, path: Path, sender: FileSender, attempt: int) -> None:
        self.path, self.sender = path, sender
        self.started: dict[str, object] = {
            "content_size": sender.content_size,
            "packets": sender.total_packets,
            "attempt": attempt,
        }
        self.notes: list[tuple[str, dict[str, object]]] = []

    @property
    def checksum(self) -> object:
        return self.sender.cksum

    async def stream(self, link: Link, reporter: Reporter) -> None:
        sender = self.sender
        try:
            with open(self.path, "rb", buffering=0) as handle:
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
            raise ConfigError(f"{self.path}: {exc}") from None
        reporter.progress(sender.bytes_sent)


def _check_sendable(path: Path) -> int:
    name = path.name
    if not (name.isascii() and name.isprintable()) or len(name) > 254:
        raise ConfigError(
            f"{name!r}: version 3 carries file names of up to 254 printable ASCII characters"
        )
    return file_size(path)
