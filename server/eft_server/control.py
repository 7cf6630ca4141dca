"""What ``eft-admin`` does, and the running server's control socket it does it through.

An action on the registry must go through the process that holds it: the running
server keeps an LRU cache of registry records and the revoked ids in memory, so a
change made behind its back (another process writing SQLite) would not be seen, and a
revoked client could still log in. So:

- while a server holds the data directory (its ``eft.lock``), it listens on a Unix
  socket in it, ``eft-admin.sock`` (mode 0600 in a 0700 directory; only the server's
  user is answered), and ``eft-admin`` sends each action there: one JSON line, one
  JSON line back;
- with no server, ``eft-admin`` takes the lock itself (a server started meanwhile
  waits for nothing: it exits 6, as with any second server) and runs the same
  ``Administration`` on the database directly.

Every action is logged (``admin_action``) and, in the server, counted
(``eft_admin_actions_total{action}``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import shutil
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from eft_protocol.noise import KeyPair
from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4
from eft_protocol.v4.handshake import fingerprint

from . import server_key
from .registration_policy import GatedRegistry
from .server_key import KEY_FILE, NEXT_KEY_FILE, KeyRotationError, ServerKeys
from .tokens import Token, parse_duration

SOCKET_FILE = "eft-admin.sock"
#: The ``action`` label of ``eft_admin_actions_total`` (a fixed set).
ACTIONS = (
    "list-clients",
    "list-files",
    "revoke",
    "free-name",
    "remove-file",
    "show-key",
    "rotate-key",
    "retire-key",
    "token-create",
    "token-list",
    "token-revoke",
    "export",
)
#: Actions that change the registry, the keys or the tokens (the others only read).
CHANGES = (
    "revoke",
    "free-name",
    "remove-file",
    "rotate-key",
    "retire-key",
    "token-create",
    "token-revoke",
)
#: Actions run on the server's event loop, between sessions' steps: the changes, and
#: reads of what the sessions change in memory (the tokens' uses).
ON_LOOP = (*CHANGES, "token-list")
#: A Unix socket's path is at most 107 bytes; a longer one is reached through the
#: directory's descriptor (Linux's /proc/self/fd), see ``short_path``.
_SUN_PATH_MAX = 107
_REQUEST_LIMIT = 1 << 16

Result = dict[str, Any]


class AdminError(Exception):
    """An action refused for a reason the operator can fix; ``kind`` picks the exit code."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Client:
    version: int
    client_id: bytes
    name: str
    record: ClientRecord | ClientRecordV4


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds")


class Administration:
    """The actions, on a registry wrapped with its policy (``GatedRegistry``): the
    server's own, or one ``eft-admin`` opened offline. Changes are made in memory and
    made durable by the caller (``registry.flush()``), as the connection drivers do."""

    def __init__(
        self,
        registry: GatedRegistry,
        data_dir: Path,
        server_fingerprint: str | None,
        on_keys_changed: Callable[[ServerKeys], None] = lambda keys: None,
    ):
        self.registry = registry
        self.engine = registry.engine
        self.data_dir = data_dir
        self.server_fingerprint = server_fingerprint
        #: The running server's: it announces a new next key, or serves with the new
        #: current key, from its next connection on.
        self.on_keys_changed = on_keys_changed
        self.log: Any = structlog.get_logger("eft.admin")

    def perform(self, action: str, args: dict[str, Any]) -> Result:
        if action == "list-clients":
            return {"clients": self.list_clients()}
        if action == "list-files":
            return {"files": self.list_files()}
        if action == "show-key":
            return self.show_key()
        if action == "rotate-key":
            return self.rotate_key()
        if action == "retire-key":
            return self.retire_key()
        if action == "revoke":
            return self.revoke(_text(args, "client"))
        if action == "free-name":
            return self.free_name(
                _text(args, "name"), bool(args.get("remove_files")), args.get("version")
            )
        if action == "remove-file":
            return self.remove_file(_text(args, "client"), _text(args, "file"))
        if action == "export":
            return self.export(Path(_text(args, "directory")))
        if action == "token-create":
            return self.create_token(args)
        if action == "token-list":
            return {"tokens": [_describe_token(t) for t in self.registry.policy.tokens.all()]}
        if action == "token-revoke":
            return self.revoke_token(_text(args, "id"))
        raise AdminError("bad_request", f"unknown action {action!r}")

    # --- reads ----------------------------------------------------------------------

    def _clients(self) -> Iterator[Client]:
        for record in self.engine.clients():
            yield Client(3, record.client_id, record.name, record)
        for record4 in self.engine.clients_v4():
            yield Client(4, record4.client_id, record4.name, record4)

    def _files(self) -> Iterator[tuple[int, FileRecord | FileRecordV4]]:
        for record in self.engine.files():
            yield 3, record
        for record4 in self.engine.files_v4():
            yield 4, record4

    def list_clients(self) -> list[Result]:
        totals: dict[tuple[int, bytes], tuple[int, int]] = {}
        for version, record in self._files():
            count, size = totals.get((version, record.client_id), (0, 0))
            totals[(version, record.client_id)] = (count + 1, size + record.size)
        rows = []
        for client in self._clients():
            files, size = totals.get((client.version, client.client_id), (0, 0))
            known = client.record
            row: Result = {
                "client_id": client.client_id.hex(),
                "name": client.name,
                "version": client.version,
                "last_seen": _time(known.last_seen),
                "revoked": (client.version, client.client_id) in self.registry.revocations,
                "files": files,
                "bytes": size,
            }
            if isinstance(known, ClientRecordV4):
                row["registered_at"] = _time(known.registered_at)
                row["fingerprint"] = fingerprint(known.static_public)
            else:
                row["key_exchanged"] = known.public_key is not None
            rows.append(row)
        return sorted(rows, key=lambda row: (row["name"], row["version"]))

    def list_files(self) -> list[Result]:
        return [row for row, _version, _record in self._file_rows()]

    def _file_rows(self) -> list[tuple[Result, int, FileRecord | FileRecordV4]]:
        names = {(c.version, c.client_id): c for c in self._clients()}
        rows = []
        for version, record in self._files():
            client = names.get((version, record.client_id))
            row: Result = {
                "client_id": record.client_id.hex(),
                "client": None if client is None else client.name,
                "version": version,
                "file": record.file_name,
                "size": record.size,
                "last_seen": None if client is None else _time(client.record.last_seen),
                "stored_at": _stored_at(record.path),
            }
            if isinstance(record, FileRecordV4):
                row["digest"] = f"{record.algorithm}:{record.digest.hex()}"
            else:
                row["cksum"] = record.cksum
                row["verified"] = record.verified
            rows.append((row, version, record))
        return sorted(rows, key=lambda r: (r[0]["client"] or "", r[1], r[0]["file"]))

    def _keys(self) -> ServerKeys:
        try:
            return server_key.load_keys(self.data_dir, create=False)
        except FileNotFoundError:
            raise AdminError(
                "no_server_key", f"{self.data_dir / KEY_FILE} does not exist: no server ran here"
            ) from None

    def show_key(self) -> Result:
        """The current key and, during a rotation, the next one and since when."""
        return _describe_keys(self._keys(), self.data_dir)

    def rotate_key(self) -> Result:
        """Make the next key: the server announces it from now on (the grace period)."""
        self._keys()  # no current key: nothing to rotate
        try:
            keys = server_key.make_next(self.data_dir)
        except KeyRotationError as exc:
            raise AdminError("rotation", str(exc)) from None
        self.on_keys_changed(keys)
        return _describe_keys(keys, self.data_dir)

    def retire_key(self) -> Result:
        """End the grace period: the next key becomes the current one."""
        before = self._keys()
        try:
            keys, retired = server_key.retire_current(self.data_dir)
        except KeyRotationError as exc:
            raise AdminError("rotation", str(exc)) from None
        self.server_fingerprint = fingerprint(keys.current.public)
        self.on_keys_changed(keys)
        return {
            **_describe_keys(keys, self.data_dir),
            "retired_fingerprint": fingerprint(before.current.public),
            "retired_path": str(retired),
        }

    def export(self, target: Path) -> Result:
        """The registry as JSON and a copy of every stored file, to hand files back."""
        if not target.is_absolute():
            raise AdminError("bad_request", f"export directory {target} must be absolute")
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise AdminError("export_target", f"{target} exists and is not an empty directory")
        try:
            return self._export(target)
        except FileNotFoundError:
            raise
        except OSError as exc:  # the target, not the data: the data is only read
            raise AdminError("export_target", f"cannot export to {target}: {exc}") from None

    def _export(self, target: Path) -> Result:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        exported, missing = [], 0
        for row, version, record in self._file_rows():
            relative = Path("files", f"v{version}", record.client_id.hex(), record.file_name)
            destination = target / relative
            destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                shutil.copyfile(record.path, destination)
                row["exported_as"] = str(relative)
                row["exported_size"] = destination.stat().st_size
            except FileNotFoundError:  # removed since it was listed
                row["exported_as"], missing = None, missing + 1
            exported.append(row)
        clients = self.list_clients()
        registry = {
            "exported_at": _time(datetime.datetime.now(tz=datetime.UTC).timestamp()),
            "server_fingerprint": self.server_fingerprint,
            "clients": clients,
            "files": exported,
        }
        (target / "registry.json").write_text(json.dumps(registry, indent=1) + "\n")
        return {
            "directory": str(target),
            "clients": len(clients),
            "files": len(exported) - missing,
            "missing": missing,
        }

    # --- invitation tokens --------------------------------------------------------------

    def create_token(self, args: dict[str, Any]) -> Result:
        """A new token: its text is in this answer and nowhere else (only its hash is
        kept), so it is never logged."""
        uses, expires, pattern = args.get("uses", 1), args.get("expires"), args.get("name_pattern")
        if not isinstance(uses, int) or isinstance(uses, bool) or uses < 1:
            raise AdminError("bad_request", "--uses must be 1 or more")
        if pattern is not None and (not isinstance(pattern, str) or not pattern):
            raise AdminError("bad_request", "--name-pattern must be a name or glob pattern")
        lifetime = None
        if expires is not None:
            try:
                lifetime = parse_duration(str(expires))
            except ValueError as exc:
                raise AdminError("bad_request", str(exc)) from None
        text, token = self.registry.policy.tokens.create(time.time(), uses, lifetime, pattern)
        return {"token": text, **_describe_token(token)}

    def revoke_token(self, token_id: str) -> Result:
        token = self.registry.policy.tokens.revoke(token_id)
        if token is None:
            raise AdminError("unknown_token", f"no token {token_id!r} (token list shows the ids)")
        return {**_describe_token(token), "state": "revoked"}

    # --- changes --------------------------------------------------------------------

    def find_client(self, text: str, version: int | None = None) -> Client:
        """By client id (32 hex digits) or by name; revoked clients are found too."""
        found: list[Client] = []
        candidates: list[tuple[int, ClientRecord | ClientRecordV4 | None]] = []
        client_id = _client_id(text)
        if client_id is not None:
            candidates += [
                (3, self.engine.client_by_id(client_id)),
                (4, self.engine.client_v4_by_id(client_id)),
            ]
        if not any(record for _, record in candidates):
            candidates = [
                (3, self.engine.client_by_name(text)),
                (4, self.engine.client_v4_by_name(text)),
            ]
        for found_version, record in candidates:
            if record is not None and version in (None, found_version):
                found.append(Client(found_version, record.client_id, record.name, record))
        if not found:
            raise AdminError("unknown_client", f"no client {text!r} in the registry")
        if len(found) > 1:
            raise AdminError(
                "ambiguous",
                f"{text!r} names a version-3 and a version-4 client: give --version 3 or 4",
            )
        return found[0]

    def revoke(self, text: str) -> Result:
        client = self.find_client(text)
        already = (client.version, client.client_id) in self.registry.revocations
        self.registry.revocations.revoke(client.version, client.client_id)
        return {**_describe(client), "revoked": True, "already_revoked": already}

    def free_name(self, name: str, remove_files: bool, version: object = None) -> Result:
        client = self.find_client(name, version if isinstance(version, int) else None)
        if client.name != name:
            raise AdminError("unknown_client", f"no client named {name!r} (that is an id)")
        files = [
            r for v, r in self._files() if (v, r.client_id) == (client.version, client.client_id)
        ]
        if files and not remove_files:
            raise AdminError(
                "has_files",
                f"{name!r} has {len(files)} stored files: export them, then free the name "
                "with --remove-files (or remove-file them one by one)",
            )
        # The revocation goes first: a crash before the registry's change is written
        # leaves a client that can log in again, never a lingering revoked id that
        # would refuse whoever registers the name next.
        self.registry.revocations.restore(client.version, client.client_id)
        for record in files:
            self._forget_file(client.version, record)
        if isinstance(client.record, ClientRecordV4):
            self.engine.forget_client_v4(client.record.static_public)
        else:
            self.engine.forget_client(client.client_id)
        for root in (self.data_dir / "files", self.data_dir / "v4" / "files"):
            with contextlib.suppress(OSError):  # its directory, if empty now
                (root / client.client_id.hex()).rmdir()
        return {**_describe(client), "freed": True, "files_removed": len(files)}

    def remove_file(self, text: str, file_name: str) -> Result:
        client = self.find_client(text)
        record: FileRecord | FileRecordV4 | None
        if client.version == 4:
            record = self.engine.file_v4(client.client_id, file_name)
        else:
            record = self.engine.file(client.client_id, file_name)
        if record is None:
            raise AdminError("unknown_file", f"{client.name!r} has no file {file_name!r}")
        self._forget_file(client.version, record)
        return {**_describe(client), "file": file_name, "size": record.size, "removed": True}

    def _forget_file(self, version: int, record: FileRecord | FileRecordV4) -> None:
        if version == 4:
            self.engine.forget_file_v4(record.client_id, record.file_name)
        else:
            self.engine.forget_file(record.client_id, record.file_name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record.path)


def _describe_token(token: Token) -> Result:
    row = token.describe(time.time())
    row["created_at"], row["expires_at"] = _time(token.created_at), _time(token.expires_at)
    return row


def _describe_keys(keys: ServerKeys, data_dir: Path) -> Result:
    result: Result = {
        "fingerprint": fingerprint(keys.current.public),
        "path": str(data_dir / KEY_FILE),
        "next_fingerprint": None,
    }
    if keys.next is not None:
        result["next_fingerprint"] = fingerprint(keys.next.public)
        result["next_path"] = str(data_dir / NEXT_KEY_FILE)
        result["next_since"] = _time(keys.next_since)
    return result


def _describe(client: Client) -> Result:
    return {"client_id": client.client_id.hex(), "name": client.name, "version": client.version}


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise AdminError("bad_request", f"{key} is missing")
    return value


def _client_id(text: str) -> bytes | None:
    if len(text) != 32:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _stored_at(path: str) -> str | None:
    try:
        return _time(os.stat(path).st_mtime)
    except OSError:
        return None


def read_fingerprint(data_dir: Path) -> str | None:
    """The server key's fingerprint as clients pin it; None when no server ran here."""
    try:
        text = (data_dir / KEY_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return fingerprint(KeyPair.from_private(base64.b64decode(text, validate=True)).public)


# --- the socket -------------------------------------------------------------------------


@contextlib.contextmanager
def short_path(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits in a Unix socket address: itself, or (Linux) the
    same file through a descriptor of its directory."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_RDONLY | getattr(os, "O_PATH", 0))
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


class ControlSocket:
    """The running server's side: one JSON request per connection, answered in order
    with the registry's other users (changes run on the event loop's thread, as the
    sessions' do; whole-table reads on a worker thread, after a flush)."""

    def __init__(self, administration: Administration, on_action: Callable[[str], None]) -> None:
        self.administration = administration
        self.on_action = on_action
        self.path = administration.data_dir / SOCKET_FILE
        self._server: asyncio.AbstractServer | None = None
        self._lock = asyncio.Lock()  # one action at a time
        self.log: Any = structlog.get_logger("eft.admin")

    async def start(self) -> None:
        if not hasattr(asyncio, "start_unix_server"):  # Windows: stop the server to administer
            self.log.warning("control_socket_unavailable", reason="no Unix sockets here")
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # a crashed server's: we hold the data lock
            with short_path(self.path) as name:
                self._server = await asyncio.start_unix_server(
                    self._serve, path=name, limit=_REQUEST_LIMIT
                )
            os.chmod(self.path, 0o600)
        except OSError as exc:  # serving clients matters more: eft-admin will say exit 8
            self.log.error("control_socket_unavailable", path=str(self.path), error=str(exc))
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _same_user(writer):
                response: Result = {"ok": False, "error": "forbidden", "message": "wrong user"}
            else:
                line = await reader.readline()
                response = await self._answer(line)
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError, ValueError):
            pass  # eft-admin went away
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> Result:
        try:
            request = json.loads(line)
            action, args = request["action"], request.get("args", {})
            if action not in ACTIONS or not isinstance(args, dict):
                raise AdminError("bad_request", f"unknown action {action!r}")
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": "bad_request", "message": str(exc)}
        except AdminError as exc:
            return {"ok": False, "error": exc.kind, "message": str(exc)}
        async with self._lock:
            return await self._run(action, args)

    async def _run(self, action: str, args: dict[str, Any]) -> Result:
        administration, registry = self.administration, self.administration.registry
        try:
            if action in ON_LOOP:
                result = administration.perform(action, args)
            else:
                await _settled(registry)
                result = await asyncio.to_thread(administration.perform, action, args)
            await _settled(registry)
        except AdminError as exc:
            self.log.warning("admin_action", action=action, ok=False, error=exc.kind, **args)
            return {"ok": False, "error": exc.kind, "message": str(exc)}
        except Exception as exc:  # a bug or the disk: say so, and keep serving
            self.log.exception("admin_action", action=action, ok=False, error="internal", **args)
            return {"ok": False, "error": "internal", "message": f"the server failed: {exc}"}
        self.on_action(action)
        self.log.info("admin_action", action=action, ok=True, **args)
        return {"ok": True, "result": result}


async def _settled(registry: GatedRegistry) -> None:
    pending = registry.flush()
    if pending is not None:
        await asyncio.wrap_future(pending)


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return True  # not Linux: the 0600 socket in a 0700 directory is the guard
    credentials = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return bool(uid == os.geteuid())


def request(data_dir: Path, action: str, args: dict[str, Any], timeout: float) -> Result:
    """``eft-admin``'s side: send one action to the server holding ``data_dir``."""
    with (
        short_path(data_dir / SOCKET_FILE) as name,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
    ):
        sock.settimeout(timeout)
        sock.connect(name)
        sock.sendall(json.dumps({"action": action, "args": args}).encode() + b"\n")
        with sock.makefile("rb") as stream:
            line = stream.readline()
    if not line:
        raise ConnectionError("the server closed the control socket without an answer")
    answer: Result = json.loads(line)
    return answer
