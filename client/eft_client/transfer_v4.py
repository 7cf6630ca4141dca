"""The version-4 client driver: handshake with a pinned server, then resumable uploads.

``eft_protocol.v4.client`` decides; this module connects, moves whole frames, reads
files in 1 MiB chunks, hashes them as they are sent, and keeps each file's upload id in
``uploads.json`` until the file is verified, so that a broken connection or a restarted
client continues where the server's durable copy ends ("resuming at 61%").
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eft_protocol import errors as protocol_errors
from eft_protocol.codes import RESPONSE_HEADER
from eft_protocol.noise import KeyPair
from eft_protocol.v4 import client as v4
from eft_protocol.v4.file_digest import FileHasher, file_digest
from eft_protocol.v4.handshake import NAME_PATTERN
from eft_protocol.v4.records import (
    CHUNK,
    CHUNK_PREFIX_SIZE,
    ErrorCode,
    check_file_name,
    chunk_count,
)

from .config import ME4_INFO, PRIV4_KEY, check_name_matches, make_private_directory
from .errors import (
    CannotConnect,
    ClientError,
    ConfigError,
    ConnectionLost,
    IntegrityFailed,
    RegistrationRefused,
    ServerFailed,
    ServerStorageFailed,
)
from .identity_v4 import (
    IdentityV4,
    protect_identity_v4,
    read_stored_identity_v4,
    write_identity_v4,
)
from .known_servers import ServerPins
from .progress import Reporter
from .reconnect import with_reconnects
from .settings import ClientSettings


@dataclass(frozen=True)
class V4Options:
    passphrase: bytes | None = None
    fingerprint: str | None = None  # configured: must match; else trust on first use


class _Retry(Exception):
    """A failure worth a new connection (1607 busy or internal, 1606 on login)."""

    def __init__(self, message: str, *, register: bool = False) -> None:
        super().__init__(message)
        self.register = register


class _Frames:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float):
        self.reader, self.writer, self.timeout = reader, writer, timeout
        #: The next answer's header, read while a file streams: the server may answer
        #: before the last chunk (a storage error), and that answer must be read, not
        #: met as a reset on a later send.
        self._early: asyncio.Future[bytes] | None = None

    def watch(self) -> None:
        """Read the next answer's header in the background from now on."""
        if self._early is None:
            self._early = asyncio.ensure_future(self.reader.readexactly(RESPONSE_HEADER.size))

    @property
    def answered(self) -> bool:
        """The server has answered while we were still sending."""
        return self._early is not None and self._early.done()

    def close(self) -> None:
        if self._early is not None:
            self._early.cancel()
            self._early = None

    async def send(self, *frames: bytes) -> None:
        try:
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

    async def receive(self, session: v4.ClientSessionV4) -> v4.Reply:
        try:
            if self._early is not None:
                early, self._early = self._early, None
                header = await asyncio.wait_for(asyncio.shield(early), self.timeout)
            else:
                header = await asyncio.wait_for(
                    self.reader.readexactly(RESPONSE_HEADER.size), self.timeout
                )
            size = session.payload_size(header)
            payload = await asyncio.wait_for(self.reader.readexactly(size), self.timeout)
        except TimeoutError:
            raise ConnectionLost(f"the server did not answer in {self.timeout:g} s") from None
        except asyncio.IncompleteReadError:
            raise ConnectionLost("the server closed the connection") from None
        except (ConnectionError, OSError, RuntimeError) as exc:
            raise ConnectionLost(f"the connection broke: {exc}") from None
        return session.receive(header, payload)


async def run_v4(
    settings: ClientSettings,
    files: Sequence[Path],
    reporter: Reporter,
    options: V4Options | None = None,
) -> None:
    """Send every file over version 4; raises ``ClientError``s."""
    options = options or V4Options()
    if not NAME_PATTERN.fullmatch(settings.name):
        raise ConfigError(
            f"{settings.name!r}: a version-4 name is a letter or digit, then up to 99 "
            "letters, digits, spaces or . _ -"
        )
    for path in files:
        _check_file(path)
    server = f"{settings.host}:{settings.port}"
    pins = ServerPins(settings.files.known_servers, server, options.fingerprint)
    identity_dir = settings.files.identity_v4_dir
    stored = read_stored_identity_v4(identity_dir, options.passphrase)
    if stored is not None and not check_name_matches(
        stored.identity.name, settings.name, identity_dir / ME4_INFO, settings.re_register
    ):
        stored = None  # --re-register: a new key, the old files set aside when it is saved
    unsaved = stored is None
    if stored is None:
        identity = IdentityV4(settings.name, KeyPair.generate())
        register_next = True
    else:
        identity = stored.identity
        # A passphrase given for a key in plaintext (or sealed at the old, cheaper
        # cost): seal it now, and say so, rather than leave it readable and exit 0.
        done = protect_identity_v4(identity_dir, stored, options.passphrase)
        if done is not None:
            reporter.event("key_protected", file=ME4_INFO, how=done)
        register_next = False
    uploads = _UploadIds(settings.files.uploads, server)
    remaining = list(files)

    def save_before_login() -> None:
        """A new key is saved before the message 3 that binds it (docs/IDENTITY.md): if
        the 1600 is lost, the next attempt still holds the key the name is bound to."""
        nonlocal unsaved
        if unsaved:
            moved = write_identity_v4(identity_dir, identity, options.passphrase)
            if moved:
                reporter.event("identity_set_aside", files=[str(path) for path in moved])
            unsaved = False

    async def connect_once() -> None:
        nonlocal register_next
        while True:
            try:
                register_next = await _session(
                    settings,
                    identity,
                    register_next,
                    remaining,
                    reporter=reporter,
                    pins=pins,
                    uploads=uploads,
                    save_before_login=save_before_login,
                )
                return
            except _Retry as exc:
                if exc.register and not register_next:
                    # The server does not know our key (a new server, or one that lost
                    # its registry): register at once, and say so in those words; it is
                    # no lost connection. A second 1606 is one, and goes the retry way.
                    register_next = True
                    reporter.event("reconnect_denied")
                    continue
                register_next = register_next or exc.register
                raise

    try:
        await with_reconnects(
            settings,
            reporter,
            connect_once,
            (ConnectionLost, CannotConnect, _Retry),
            progress=lambda: len(files) - len(remaining),
        )
    except _Retry as exc:
        raise ServerFailed(f"{exc}; giving up") from None
    except RegistrationRefused:
        if stored is None and len(remaining) == len(files):
            # The authenticated server bound the name to another key: the key made for
            # it this run was never bound to anything, and would only block another name.
            for name in (ME4_INFO, PRIV4_KEY):
                (identity_dir / name).unlink(missing_ok=True)
        raise


async def _session(
    settings: ClientSettings,
    identity: IdentityV4,
    register: bool,
    remaining: list[Path],
    *,
    reporter: Reporter,
    pins: ServerPins,
    uploads: _UploadIds,
    save_before_login: Callable[[], None],
) -> bool:
    """One connection; returns whether the next one must register."""
    session = v4.ClientSessionV4(
        identity.key, identity.name, register=register, check_server=pins.check
    )
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(settings.host, settings.port), settings.connect_timeout
        )
    except (TimeoutError, OSError) as exc:
        raise CannotConnect(f"cannot connect to {settings.host}:{settings.port}: {exc}") from None
    frames = _Frames(reader, writer, settings.response_timeout)
    reporter.event("connected", host=settings.host, port=settings.port, protocol=4)
    try:
        await frames.send(session.start())
        reply = await frames.receive(session)
        if pins.newly_pinned:
            reporter.event("server_pinned", fingerprint=pins.newly_pinned)
            pins.newly_pinned = None  # said once, not at every reconnection
        save_before_login()
        await frames.send(*reply.send)
        reply = await frames.receive(session)
        if reply.registered is not None:  # me4.info was written before the 825
            reporter.event("registered", name=identity.name, client_id=identity.client_id.hex())
        else:
            reporter.event("reconnected", name=identity.name)
        while remaining:
            await _send_file(frames, session, remaining[0], reporter, uploads)
            remaining.pop(0)
        return False
    except v4.UnknownIdentity:
        raise _Retry("the server does not know this key (1606)", register=True) from None
    except v4.ServerError as exc:
        raise _server_error(exc) from None
    except v4.NotVersion4 as exc:
        advice = "run with --protocol 3" if exc.version_3 else "check --server"
        raise ServerFailed(f"{exc}: {advice} (nothing was sent)") from None
    except protocol_errors.RegistrationRefused as exc:
        raise RegistrationRefused(str(exc)) from None
    except protocol_errors.IntegrityFailed as exc:
        raise IntegrityFailed(str(exc)) from None
    except protocol_errors.ProtocolError as exc:
        raise ServerFailed(f"the server broke the protocol: {exc}") from None
    finally:
        frames.close()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def _server_error(exc: v4.ServerError) -> Exception:
    if exc.error in (ErrorCode.BUSY, ErrorCode.INTERNAL):
        return _Retry(f"server responded with an error: {exc}")
    if exc.error == ErrorCode.STORAGE:
        return ServerStorageFailed(str(exc))
    if exc.error == ErrorCode.REGISTRATION_CLOSED:
        return RegistrationRefused(str(exc))
    if exc.error == ErrorCode.BAD_FILE_NAME:
        return ConfigError(str(exc))
    return ServerFailed(str(exc))


async def _send_file(
    frames: _Frames,
    session: v4.ClientSessionV4,
    path: Path,
    reporter: Reporter,
    uploads: _UploadIds,
) -> None:
    attempt = 1
    while True:
        size = _check_file(path)
        earlier = uploads.known(path, size)  # an earlier attempt sent this upload id
        upload_id = uploads.get(path, size)
        try:
            meta = session.begin_file(path.name, size, upload_id, attempt)
        except ValueError as exc:  # over the limit the server announced in message 2
            raise ServerFailed(f"{path.name} is {size} bytes, and {exc}") from None
        await frames.send(meta)
        reply = await frames.receive(session)
        assert reply.start_chunk is not None
        start = reply.start_chunk
        total = chunk_count(size)
        reporter.event(
            "file_started",
            file=path.name,
            size=size,
            content_size=size,
            packets=total,
            attempt=attempt,
            protocol=4,
        )
        if start > 1:
            percent = round(100 * (start - 1) * CHUNK / max(size, 1))
            reporter.event("resuming", file=path.name, percent=percent, chunk=start, of=total)
        elif earlier and attempt == 1:
            # The server keeps nothing of it: it expired (--resume-ttl), its quota for
            # unfinished uploads dropped it, or no chunk of it had reached its disk.
            reporter.event("restarting", file=path.name, of=total)
        digest = file_digest()
        try:
            await _stream(
                frames, session, path, start=start, total=total, digest=digest, reporter=reporter
            )
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        session.file_hashed(digest.digest())
        reply = await frames.receive(session)  # 1603: the server's digest
        matched = bool(reply.digest_ok)
        await frames.send(*reply.send)
        if not matched:
            action = "sending it again" if attempt < v4.MAX_FILE_ATTEMPTS else "giving up (902)"
            reporter.event("crc_mismatch", file=path.name, attempt=attempt, action=action)
        reply = await frames.receive(session)  # 1604 (raises IntegrityFailed after 902)
        uploads.forget(path, size)  # a retry starts afresh; a verified file is done
        if reply.file_verified:
            reporter.event(
                "file_verified",
                file=path.name,
                size=size,
                cksum=digest.hexdigest()[:16],
                attempt=attempt,
            )
            return
        attempt += 1


async def _stream(
    frames: _Frames,
    session: v4.ClientSessionV4,
    path: Path,
    *,
    start: int,
    total: int,
    digest: FileHasher,
    reporter: Reporter,
) -> None:
    with open(path, "rb", buffering=0) as handle:
        # One buffer for every chunk: the record prefix's room, then the chunk's data.
        record = bytearray(CHUNK_PREFIX_SIZE + CHUNK)
        room = memoryview(record)
        data = room[CHUNK_PREFIX_SIZE:]
        prefix = (start - 1) * CHUNK
        while prefix:  # the server has these bytes; our hash must cover them too
            count = handle.readinto(data[: min(prefix, CHUNK)])
            if not count:
                raise ConfigError(f"{path} shrank while it was being sent")
            digest.update(data[:count])
            prefix -= count
        sent = (start - 1) * CHUNK
        frames.watch()
        for index in range(start, total + 1):
            if frames.answered:  # before the last chunk: an error; read it and stop
                await frames.receive(session)
            count = _read_chunk(handle, data)
            digest.update(data[:count])
            pieces = session.chunk_record_pieces(index, room[: CHUNK_PREFIX_SIZE + count])
            try:
                await frames.send(*pieces)
            except ConnectionLost:
                # The server may have answered, then closed: its answer says why.
                await frames.receive(session)
                raise
            sent += count
            reporter.progress(sent)


def _read_chunk(handle: io.RawIOBase, data: memoryview) -> int:
    """Fill ``data`` (short only at the end of the file; a raw read may return less)."""
    count = 0
    while count < len(data) and (got := handle.readinto(data[count:])):
        count += got
    return count


def _check_file(path: Path) -> int:
    try:
        check_file_name(path.name)
    except ValueError as exc:
        raise ConfigError(f"{exc}: version 4 takes names of letters, digits, ' ._-'") from None
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not os.path.isfile(path):
        raise ConfigError(f"{path} is not a regular file")
    return info.st_size


class _UploadIds:
    """Upload ids of unfinished files, so a later run can resume them."""

    def __init__(self, path: Path, server: str) -> None:
        self.path, self.server = path, server

    def _key(self, file: Path, size: int) -> str:
        info = file.stat()
        return f"{self.server}|{file.resolve()}|{size}|{info.st_mtime_ns}"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def known(self, file: Path, size: int) -> bool:
        try:
            return self._key(file, size) in self._load()
        except OSError:
            return False

    def get(self, file: Path, size: int) -> bytes:
        entries = self._load()
        key = self._key(file, size)
        if key not in entries:
            entries[key] = secrets.token_hex(16)
            self._save(entries)
        return bytes.fromhex(entries[key])

    def forget(self, file: Path, size: int) -> None:
        entries = self._load()
        with contextlib.suppress(OSError):
            if entries.pop(self._key(file, size), None) is not None:
                self._save(entries)

    def _save(self, entries: dict[str, str]) -> None:
        make_private_directory(self.path.parent)
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(entries, indent=1))
        os.replace(temp, self.path)


__all__ = ["ClientError", "V4Options", "run_v4"]
