"""The version-4 client: ``ClientSessionV4`` on the one transfer loop.

``eft_protocol.v4.client`` decides; ``transfer_loop`` connects, sends, reads and
reports. This module is what only version 4 has: the identity kept from run to run
(saved before the message that binds it), the pinned server key, whole records read
off the stream (a 23-byte header, then its payload), files read in 1 MiB chunks and
hashed as they are sent, and each file's upload id kept in ``uploads.json``
(``upload_ids.py``) until the file is verified, so that a broken connection or a
restarted client continues where the server's durable copy ends ("resuming at 61%").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eft_protocol.codes import MAX_FILE_ATTEMPTS, RESPONSE_HEADER
from eft_protocol.v4 import client as v4
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.handshake import (
    FEATURE_PACK,
    FEATURE_STREAM,
    NAME_PATTERN,
    SUPPORTED_FEATURES,
    NoCommonRevision,
    Offer,
)
from eft_protocol.v4.pack import (
    ENTRY_HEAD_SIZE,
    MAX_PACKED_SIZE,
    Outcome,
    Refusal,
    pack_size,
)
from eft_protocol.v4.paths import BadPath, normalise
from eft_protocol.v4.records import (
    CHUNK,
    CHUNK_PREFIX_SIZE,
    MAX_PLAINTEXT,
    TAG_SIZE,
    chunk_count,
)

from .config import ME4_INFO, PRIV4_KEY
from .errors import (
    ClientError,
    ConfigError,
    ConnectionLost,
    FileChanged,
    IntegrityFailed,
    RegistrationRefused,
    ServerFailed,
    ServerNoRoom,
    ServerStorageFailed,
)
from .folders import VERIFIED_LOG, VerifiedFiles, expand
from .identity_v4 import IdentityV4, identity_for_run, write_identity_v4
from .known_servers import ServerPins
from .link import Link, OutgoingFilter
from .progress import Reporter
from .settings import ClientSettings
from .transfer_loop import (
    Answer,
    ReconnectAtOnce,
    RetryLater,
    choose_aes_engines,
    file_size,
    transfer,
)
from .upload_ids import UploadIds


@dataclass(frozen=True)
class V4Options:
    passphrase: bytes | None = None
    fingerprint: str | None = None  # configured: must match; else trust on first use
    #: ``--as``: the name the one file is stored under (a relative path), not its own.
    stored_as: str | None = None
    #: ``--follow-symlinks``: a link in a folder is sent as what it points to.
    follow_symlinks: bool = False


async def run_v4(
    settings: ClientSettings,
    files: Sequence[Path],
    reporter: Reporter,
    options: V4Options | None = None,
) -> None:
    """Send every file over version 4; raises ``ClientError``s."""
    choose_aes_engines()
    options = options or V4Options()
    if not NAME_PATTERN.fullmatch(settings.name):
        raise ConfigError(
            f"{settings.name!r}: a version-4 name is a letter or digit, then up to 99 "
            "letters, digits, spaces or . _ -"
        )
    if options.stored_as is not None and any(path.is_dir() for path in files):
        raise ConfigError("--as names one file, not a folder")
    tree = expand(files, reporter, follow_symlinks=options.follow_symlinks)
    names = {**_stored_names([p for p in tree.files if p not in tree.names], None), **tree.names}
    if options.stored_as is not None:
        names = _stored_names(tree.files, options.stored_as)
    for path in tree.files:  # a folder's files were looked at by the walk
        if path not in tree.from_folders:
            file_size(path)
    server = f"{settings.host}:{settings.port}"
    verified = VerifiedFiles(settings.files.uploads.parent / VERIFIED_LOG, server)
    files = []
    for path in tree.files:  # a folder's files a server verified already: not again
        if path in tree.from_folders and verified.done(path, names[path]):
            reporter.event("file_skipped", file=names[path], reason="verified earlier")
        else:
            files.append(path)
    identity_dir = settings.files.identity_v4_dir
    chosen = identity_for_run(
        identity_dir, settings.name, options.passphrase, re_register=settings.re_register
    )
    if chosen.protected is not None:
        reporter.event("key_protected", file=ME4_INFO, how=chosen.protected)
    version = Version4(
        settings,
        reporter,
        chosen.identity,
        unsaved=chosen.new,
        passphrase=options.passphrase,
        pins=ServerPins(settings.files.known_servers, server, options.fingerprint),
        uploads=UploadIds(settings.files.uploads, server),
        names=names,
    )
    version.folders = list(tree.directories)
    version.verified, version.from_folders = verified, tree.from_folders
    # The walk's sizes; a file named on the command line was checked above.
    sizes = (tree.from_folders.get(path) for path in files)
    version.totals = Totals(
        len(files),
        sum(
            file_size(path) if size is None else size
            for path, size in zip(files, sizes, strict=True)
        ),
    )
    if tree.directories or tree.from_folders:
        reporter.event(
            "folders",
            files=len(files),
            bytes=version.totals.bytes,
            empty_folders=len(tree.directories),
            skipped=tree.skipped + len(tree.files) - len(files),
        )
    remaining = list(files)
    try:
        try:
            await transfer(settings, remaining, reporter, version)
        finally:
            verified.flush()
        if version.changed:
            raise FileChanged(
                f"{len(version.changed)} file(s) changed while being sent and were not "
                f"stored: {', '.join(version.changed[:5])}"
            )
    except RegistrationRefused:
        if chosen.new and len(remaining) == len(files):
            # The authenticated server bound the name to another key: the key made for
            # it this run was never bound to anything, and would only block another name.
            for name in (ME4_INFO, PRIV4_KEY):
                (identity_dir / name).unlink(missing_ok=True)
        raise


#: Files up to this size (one record) are sent several at a time when the server has
#: STREAM; a larger one goes alone: a cut resumes it (a streamed file is sent whole
#: again), and a server without room refuses it before its data.
STREAM_MAX_SIZE = CHUNK


@dataclass
class Totals:
    """Files and bytes of the run, and how many are done: overall progress."""

    files: int
    bytes: int
    files_done: int = 0
    bytes_done: int = 0

    def done(self, size: int) -> dict[str, int]:
        self.files_done += 1
        self.bytes_done += size
        return {
            "files_done": self.files_done,
            "files_total": self.files,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes,
        }


@dataclass
class _ReadFile:
    """A small file read whole and hashed, ready to stream (``Version4._read_one``)."""

    path: Path
    name: str
    attempt: int
    size: int
    record: bytearray  # the record prefix's room, then the data
    digest: bytes
    check: str  # the digest's start, as events show it
    mtime_ns: int  # as read: what the verified files' record keeps (no stat again)


def _packable(read: _ReadFile) -> bool:
    """Whether the file fits in a pack with nothing else (``pack.MAX_PACKED_SIZE``)."""
    return read.size + len(read.name.encode()) <= MAX_PACKED_SIZE


def _fill_pack(
    first: _ReadFile, read_next: Callable[[], _ReadFile | None], most: int
) -> tuple[list[_ReadFile], _ReadFile | None]:
    """A pack's files, ``first`` and those read after it while they fit; and the first
    file that did not go in (read already), if any."""
    batch = [first]
    size = pack_size([(first.name.encode(), first.size)])
    upcoming = read_next()
    while upcoming is not None and len(batch) < most and _packable(upcoming):
        grown = size + ENTRY_HEAD_SIZE + len(upcoming.name.encode()) + upcoming.size
        if grown > MAX_PLAINTEXT:
            break
        batch.append(upcoming)
        size = grown
        upcoming = read_next()
    return batch, upcoming


def _identity(path: Path) -> tuple[int, int, int]:
    """What tells that a file changed: size, modification time, inode."""
    info = path.stat()
    return info.st_size, info.st_mtime_ns, info.st_ino


class Version4:
    """Version 4's side of the transfer loop (``transfer_loop.Version``)."""

    sends_views = True  # a file's records are sealed into one reused buffer
    session: v4.ClientSessionV4  # the current connection's (``new_session``)

    def __init__(
        self,
        settings: ClientSettings,
        reporter: Reporter,
        identity: IdentityV4,
        *,
        unsaved: bool,
        passphrase: bytes | None,
        pins: ServerPins,
        uploads: UploadIds,
        names: dict[Path, str] | None = None,
    ) -> None:
        self.connected: dict[str, object] = {"protocol": 4}  # ``connected``'s own fields
        self.settings, self.reporter, self.identity = settings, reporter, identity
        self.unsaved, self.passphrase = unsaved, passphrase
        self.pins, self.uploads = pins, uploads
        #: Each file's name on the server (NFC, checked): its own, or ``--as``.
        self.names = names or {}
        #: The next connection registers the key (message 3 is 825, not 827).
        self.register_next = unsaved
        self._file: tuple[Path, int] | None = None  # the file being sent, and its size
        #: Empty folders to make (STREAM's DIRECTORY), and the files of folders.
        self.folders: list[str] = []
        self.from_folders: dict[Path, int] = {}
        self.verified: VerifiedFiles | None = None
        self.totals = Totals(0, 0)
        #: Stored names of files that changed while being read: skipped, exit 11.
        self.changed: list[str] = []

    def stored_name(self, path: Path) -> str:
        return self.names.get(path, path.name)

    def on_verified(self, path: Path, size: int, mtime_ns: int | None = None) -> dict[str, int]:
        """A file is verified: remembered if it came from a folder (with the size and
        modification time it was read with, when known); overall counts."""
        if self.verified is not None and path in self.from_folders:
            as_read = None if mtime_ns is None else (size, mtime_ns)
            self.verified.add(path, self.stored_name(path), as_read)
        return self.totals.done(size)

    def check_file(self, path: Path) -> int:
        self.names.setdefault(path, _stored_name(path, None))
        return file_size(path)

    def new_session(self) -> OutgoingFilter | None:
        identity = self.identity
        offer = None
        if os.environ.get("EFT_STREAM") == "0":  # one file at a time (the attack lab's wire)
            offer = Offer(features=SUPPORTED_FEATURES & ~FEATURE_STREAM)
        elif os.environ.get("EFT_PACK") == "0":  # small files one record each (STREAM's)
            offer = Offer(features=SUPPORTED_FEATURES & ~FEATURE_PACK)
        self.session = v4.ClientSessionV4(
            identity.key,
            identity.name,
            register=self.register_next,
            check_server=self.pins.check,
            token=self.settings.token,
            offer=offer,
        )
        return None

    async def receive(self, link: Link) -> v4.ReplyV4:
        deadline = link.answer_deadline()
        header = await link.read_exactly(RESPONSE_HEADER.size, deadline)
        payload = await link.read_exactly(self.session.payload_size(header), deadline)
        return self.session.receive(header, payload)

    async def handshake(self, link: Link) -> None:
        session, identity, reporter = self.session, self.identity, self.reporter
        await link.send([session.start()])
        try:
            reply = await self.receive(link)
        except ConnectionLost as exc:  # the same failure, retried alike; said plainly
            raise ConnectionLost(
                f"{exc}, with no answer to the version-4 hello (a server of version 4's "
                "first revision closes at once: upgrade it)"
            ) from None
        if reply.cookie:  # the server is under load: message 1 again, with its cookie
            await link.send(reply.send)
            reply = await self.receive(link)
        if self.pins.newly_pinned:
            reporter.event("server_pinned", fingerprint=self.pins.newly_pinned)
            self.pins.newly_pinned = None  # said once, not at every reconnection
        change = self.pins.after_hello(session.next_server_fingerprint)
        if change is not None:  # said once: the next contact finds known_servers changed
            reporter.event(
                f"server_key_{change.kind}",
                fingerprint=change.fingerprint,
                previous=change.previous,
                file=str(self.pins.path),
            )
        self._save_identity()
        await link.send(reply.send)
        reply = await self.receive(link)
        if reply.registered is not None:  # me4.info was written before the 825
            reporter.event("registered", name=identity.name, client_id=identity.client_id.hex())
        else:
            reporter.event("reconnected", name=identity.name)

    def _save_identity(self) -> None:
        """A new key is saved before the message 3 that binds it (docs/IDENTITY.md): if
        the 1600 is lost, the next attempt still holds the key the name is bound to."""
        if self.unsaved:
            identity_dir = self.settings.files.identity_v4_dir
            moved = write_identity_v4(identity_dir, self.identity, self.passphrase)
            if moved:
                self.reporter.event("identity_set_aside", files=[str(path) for path in moved])
            self.unsaved = False

    async def begin_file(self, link: Link, path: Path, size: int) -> FileAttempt4:
        earlier = self.uploads.known(path, size)  # an earlier attempt sent this upload id
        upload_id = self.uploads.get(path, size)
        try:
            meta = self.session.begin_file(self.names[path], size, upload_id)
        except ValueError as exc:  # over the limit the server announced in message 2
            raise ServerFailed(f"{path.name} is {size} bytes, and {exc}") from None
        await link.send([meta])
        reply = await self.receive(link)
        assert reply.start_chunk is not None
        self._file = (path, size)
        return FileAttempt4(self, path, size, reply.start_chunk, reply.attempt, earlier=earlier)

    async def answer(self, link: Link) -> Answer:
        reply = await self.receive(link)
        if reply.digest_ok is not None:  # 1603: the server's digest; our verdict goes out
            mismatch = None
            if not reply.digest_ok:
                mismatch = "giving up (902)" if reply.gave_up else "sending it again"
            return Answer(reply.send, reply.attempt, mismatch)
        # 1604 (the session raised IntegrityFailed's cause after a 902).
        assert self._file is not None
        self.uploads.forget(*self._file)  # a retry starts afresh; a verified file is done
        return Answer(
            reply.send,
            reply.attempt,
            resend_file=reply.resend_file,
            file_verified=reply.file_verified,
        )

    async def send_streamed(self, link: Link, remaining: list[Path], reporter: Reporter) -> None:
        """Several files in flight (STREAM, docs/PROTOCOL-v4.md section 8.1): each small
        file that no earlier run began goes as metadata, data and 903 without waiting;
        answers are read when the window is full or nothing is left to send. Each file
        verified leaves ``remaining``; the others stay for one at a time."""
        session = self.session
        window = session.stream_window
        if not window:
            if self.folders:
                reporter.event(
                    "skipped",
                    path=", ".join(self.folders[:5]),
                    reason="the server cannot make empty folders (it lacks STREAM)",
                )
                self.folders = []
            return
        await self._send_folders(link)
        queue: deque[tuple[Path, int]] = deque()
        kept = self.uploads.any_kept()  # else no file was begun by an earlier run
        for path in remaining:
            size = self.from_folders.get(path)  # as the walk saw it; read checks again
            if size is None:
                size = self.check_file(path)
            if size <= STREAM_MAX_SIZE and not (kept and self.uploads.known(path, size)):
                queue.append((path, 1))
        in_flight: dict[int, _ReadFile] = {}  # by file id; its record is sent, not needed
        done: set[Path] = set()

        def read_next() -> _ReadFile | None:
            """The next file to send, read whole (a changed one is reported, done)."""
            while queue:
                path, attempt = queue.popleft()
                read = self._read_one(path, attempt)
                if read is not None:
                    return read
                done.add(path)
            return None

        # One file read ahead: only the real last one asks for its group at once
        # (SYNC_NOW). A full window needs no SYNC_NOW: the server answers every
        # W/2 files (section 8.1), and one asked for each time the window filled
        # would make groups of one file, a sync each.
        upcoming = read_next()
        pack_files = session.pack_files
        try:
            while upcoming is not None or session.unanswered:
                if upcoming is not None and pack_files and _packable(upcoming):
                    # PACK (section 8.2): whole files, several to a record. A client
                    # that waits has more than W - PACK_FILES files unanswered, so the
                    # server has answered a group already: no SYNC_NOW needed but last.
                    if session.unanswered + pack_files <= window:
                        batch, upcoming = _fill_pack(upcoming, read_next, pack_files)
                        first = await self._send_pack(link, batch, last=upcoming is None)
                        for number, read in enumerate(batch):
                            read.record = bytearray()  # sent: the data need not stay
                            in_flight[first + number] = read
                        continue
                elif upcoming is not None and session.unanswered < window:
                    current, upcoming = upcoming, read_next()
                    file_id = await self._stream_one(link, current, last=upcoming is None)
                    current.record = bytearray()  # sent: the data need not stay
                    in_flight[file_id] = current
                    continue
                reply = await self.receive(link)
                if reply.pack_outcomes is not None:
                    assert reply.file_id is not None
                    settled = [
                        (in_flight.pop(reply.file_id + number), outcome)
                        for number, outcome in enumerate(reply.pack_outcomes)
                    ]
                elif reply.file_id is None or not (reply.file_verified or reply.resend_file):
                    continue  # a resume point or a 1603: its outcome follows
                else:
                    sent = in_flight.pop(reply.file_id)
                    stored = Outcome.STORED if reply.file_verified else Outcome.DIGEST_DIFFERED
                    settled = [(sent, stored)]
                for sent, outcome in settled:
                    if isinstance(outcome, Refusal):
                        # The message names the file, as a 1607 about one does.
                        refused = v4.RefusedByServer(outcome.error, outcome.message)
                        raise _server_error(refused)
                    if outcome == Outcome.STORED:
                        self._verified(sent, reporter)
                        done.add(sent.path)
                    elif sent.attempt >= MAX_FILE_ATTEMPTS:
                        raise IntegrityFailed(
                            f"{sent.name}: the digest differed on {sent.attempt} attempts"
                        )
                    else:
                        reporter.event(
                            "crc_mismatch",
                            file=sent.name,
                            attempt=sent.attempt,
                            action="sending it again",
                        )
                        queue.append((sent.path, sent.attempt + 1))
                        if upcoming is None:
                            upcoming = read_next()
        finally:
            remaining[:] = [path for path in remaining if path not in done]

    def _verified(self, sent: _ReadFile, reporter: Reporter) -> None:
        overall = self.on_verified(sent.path, sent.size, sent.mtime_ns)
        reporter.event(
            "file_verified",
            file=sent.name,
            size=sent.size,
            cksum=sent.check,
            attempt=sent.attempt,
            **overall,
        )

    def _started(self, read: _ReadFile) -> None:
        """A file read whole is about to go (in one record): its ``file_started``."""
        self.reporter.event(
            "file_started",
            file=read.name,
            size=read.size,
            content_size=read.size,
            packets=1,
            attempt=read.attempt,
            protocol=4,
        )

    async def _send_pack(self, link: Link, batch: list[_ReadFile], *, last: bool) -> int:
        """Files read whole, in one 904 (PACK); the first one's file id."""
        for read in batch:
            self._started(read)
        files = [
            (read.name.encode(), read.digest, memoryview(read.record)[CHUNK_PREFIX_SIZE:])
            for read in batch
        ]
        first, pieces = self.session.seal_pack(files, sync_now=last)
        await link.send(pieces)
        for read in batch:
            self.reporter.progress(read.size)
        return first

    async def _send_folders(self, link: Link) -> None:
        """The empty folders, in windows, before the files."""
        session = self.session
        for name in self.folders:
            while session.unanswered >= session.stream_window:
                await self.receive(link)
            await link.send([session.begin_folder(name)])
        while session.unanswered:
            await self.receive(link)
        if self.folders:
            self.reporter.event("folders_made", count=len(self.folders))
        self.folders = []

    def _read_one(self, path: Path, attempt: int) -> _ReadFile | None:
        """Read one file (at most one record) whole, before anything of it is sent, so
        that a file that changed while it was read is caught (reported, skipped: None)."""
        name = self.names[path]
        try:
            handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
        except OSError as exc:  # gone or unreadable since the walk: as ``file_size`` says
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        with handle:
            # fstat of the open file, not a stat of its path: the same "before", one
            # path look-up less per file (issue 25).
            first = os.fstat(handle.fileno())
            before = first.st_size, first.st_mtime_ns, first.st_ino
            room = bytearray(CHUNK_PREFIX_SIZE + before[0] + 1)  # one more: did it grow?
            count = _read_chunk(handle, memoryview(room)[CHUNK_PREFIX_SIZE:])
            after = os.fstat(handle.fileno())
        if count != before[0] or (after.st_size, after.st_mtime_ns, after.st_ino) != before:
            self.reporter.event("file_changed", file=name, path=str(path))
            self.changed.append(name)
            return None
        del room[CHUNK_PREFIX_SIZE + count :]
        digest = file_digest()
        digest.update(memoryview(room)[CHUNK_PREFIX_SIZE:])
        return _ReadFile(
            path, name, attempt, count, room, digest.digest(), digest.hexdigest()[:16], before[1]
        )

    async def _stream_one(self, link: Link, read: _ReadFile, *, last: bool) -> int:
        """Send one file read whole: its metadata, its record and its 903; its id."""
        session = self.session
        meta = session.begin_stream_file(
            read.name, read.size, secrets.token_bytes(16), read.attempt
        )
        file_id = session.last_file_id
        self._started(read)
        frames = [meta, *session.chunk_record_pieces(1, read.record)]
        frames.append(session.commit_if(read.digest, sync_now=last))
        await link.send(frames)
        self.reporter.progress(read.size)
        return file_id

    def session_done(self) -> None:
        self.register_next = False

    def client_error(self, exc: Exception) -> Exception | None:
        if isinstance(exc, v4.UnknownIdentity):
            if self.register_next:  # a second 1606 is a failure, retried as one
                return RetryLater("the server does not know this key (1606)")
            # The server does not know our key (a new server, or one that lost its
            # registry): register at once, and say so in those words; it is no lost
            # connection.
            self.register_next = True
            self.reporter.event("reconnect_denied")
            return ReconnectAtOnce()
        if isinstance(exc, v4.RefusedByServer):
            return _server_error(exc)
        if isinstance(exc, NoCommonRevision):  # authenticated: the server said so
            return ServerFailed(f"{exc} (nothing was sent)")
        if isinstance(exc, v4.NotVersion4):
            advice = "run with --protocol 3" if exc.version_3 else "check --server"
            return ServerFailed(f"{exc}: {advice} (nothing was sent)")
        return None


#: How each of the core's decisions about a 1607 ends this connection.
_REFUSALS: dict[v4.Decision, type[Exception]] = {
    v4.Decision.STORAGE_FAILED: ServerStorageFailed,
    v4.Decision.REGISTRATION_CLOSED: RegistrationRefused,
    v4.Decision.BAD_FILE_NAME: ConfigError,
    v4.Decision.NO_ROOM: ServerNoRoom,
    v4.Decision.FAIL: ServerFailed,
}


#: The server's reasons for refusing a registration (docs/OPERATIONS.md), in words.
_REGISTRATION_REFUSALS = {
    "no_token": "this server admits new names with an invitation token only: give it "
    "with --token-file, EFT_TOKEN_FILE or EFT_TOKEN",
    "bad_token": "the invitation token is not one this server made (mistyped, or another server's)",
    "token_expired": "the invitation token has expired: ask the server's operator for another",
    "token_used": "the invitation token has been used up: ask the server's operator for another",
    "token_revoked": "the invitation token was revoked",
    "token_name": "the invitation token does not admit this name",
    "closed": "this server admits no new names",
    "not_allowed": "this name is not on the server's allowlist (an invitation token may admit it)",
}


def _server_error(exc: v4.RefusedByServer) -> Exception:
    if exc.decision is v4.Decision.RETRY:
        return RetryLater(f"server responded with an error: {exc}")
    if exc.decision is v4.Decision.REGISTRATION_CLOSED:
        reason = str(exc).rsplit("registration refused: ", 1)[-1]
        if reason in _REGISTRATION_REFUSALS:
            return RegistrationRefused(f"{exc}: {_REGISTRATION_REFUSALS[reason]}")
    return _REFUSALS[exc.decision](str(exc))


class FileAttempt4:
    """One attempt at a file, from the server's resume point: 1 MiB records, hashed."""

    def __init__(
        self, version: Version4, path: Path, size: int, start: int, attempt: int, *, earlier: bool
    ) -> None:
        self.version, self.path, self.start = version, path, start
        self.total = chunk_count(size)
        self.digest = file_digest()
        self.started: dict[str, object] = {
            "content_size": size,
            "packets": self.total,
            "attempt": attempt,
            "protocol": 4,
        }
        self.notes: list[tuple[str, dict[str, object]]] = []
        if start > 1:
            percent = round(100 * (start - 1) * CHUNK / max(size, 1))
            self.notes.append(("resuming", {"percent": percent, "chunk": start, "of": self.total}))
        elif earlier and attempt == 1:
            # The server keeps nothing of it: it expired (--resume-ttl), its quota for
            # unfinished uploads dropped it, or no chunk of it had reached its disk.
            self.notes.append(("restarting", {"of": self.total}))

    @property
    def checksum(self) -> object:
        return self.digest.hexdigest()[:16]

    async def stream(self, link: Link, reporter: Reporter) -> None:
        version, digest, start = self.version, self.digest, self.start
        session = version.session
        before = _identity(self.path)
        with open(self.path, "rb", buffering=0) as handle:
            # One buffer for every chunk: the record prefix's room, then the chunk's data.
            record = bytearray(CHUNK_PREFIX_SIZE + CHUNK)
            room = memoryview(record)
            # And one for every sealed record (``Link.send`` returns once the kernel has it).
            sealed = bytearray(CHUNK_PREFIX_SIZE + CHUNK + TAG_SIZE)
            data = room[CHUNK_PREFIX_SIZE:]
            prefix = (start - 1) * CHUNK
            while prefix:  # the server has these bytes; our hash must cover them too
                count = handle.readinto(data[: min(prefix, CHUNK)])
                if not count:
                    raise ConfigError(f"{self.path} shrank while it was being sent")
                digest.update(data[:count])
                prefix -= count
            sent = (start - 1) * CHUNK
            link.read_ahead(RESPONSE_HEADER.size)
            hashing: concurrent.futures.Future[object] | None = None
            try:
                for index in range(start, self.total + 1):
                    if link.answered:  # before the last chunk: an error; read it and stop
                        await version.receive(link)
                    count = _read_chunk(handle, data)
                    # Hashed in a thread while it is sealed and sent (BLAKE3, the send
                    # and the file's read release the GIL): the client's own critical
                    # path per chunk is the longer of the two, not their sum.
                    hashing = _HASHER.submit(digest.update, data[:count])
                    pieces = session.chunk_record_pieces(
                        index, room[: CHUNK_PREFIX_SIZE + count], sealed
                    )
                    try:
                        await link.send(pieces)
                    except ConnectionLost:
                        # The server may have answered, then closed: its answer says why.
                        await version.receive(link)
                        raise
                    await asyncio.wrap_future(hashing)  # before the next read refills it
                    hashing = None
                    sent += count
                    reporter.progress(sent)
            finally:
                if hashing is not None:  # never leave the thread reading a reused buffer
                    concurrent.futures.wait([hashing])
            after = os.fstat(handle.fileno())
        if (after.st_size, after.st_mtime_ns, after.st_ino) != before:
            # What went out mixes two states of the file: never confirmed (no 900).
            raise FileChanged(f"{self.path} changed while it was being sent; it was not stored")
        session.file_hashed(digest.digest())


#: Hashes the chunk being sent (``FileAttempt4.stream``): one thread, one chunk at a time.
_HASHER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="eft-hash")


def _read_chunk(handle: io.RawIOBase, data: memoryview) -> int:
    """Fill ``data`` (short only at the end of the file; a raw read may return less)."""
    count = 0
    while count < len(data) and (got := handle.readinto(data[count:])):
        count += got
    return count


def _stored_names(files: Sequence[Path], stored_as: str | None) -> dict[Path, str]:
    if stored_as is not None and len(files) != 1:
        raise ConfigError(f"--as names one file; {len(files)} were given")
    return {path: _stored_name(path, stored_as) for path in files}


def _stored_name(path: Path, stored_as: str | None) -> str:
    """The name ``path`` is stored under: ``--as``, else its own; NFC, and checked
    here so a name the server would refuse stops the run before it connects."""
    try:
        return normalise(stored_as if stored_as is not None else path.name)
    except BadPath as exc:
        raise ConfigError(f"{exc} (docs/PROTOCOL-v4.md section 6.3)") from None


__all__ = ["ClientError", "V4Options", "run_v4"]
