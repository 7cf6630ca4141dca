"""Who may register a new name, and who may log in: the operator's policy.

The sessions know nothing of it. The server hands them its registry wrapped in a
``GatedRegistry``: the sessions ask it, through the core's ``RegistrationGate`` hook,
before they register a name nobody holds (with the time the driver gave them), and its
lookups do not find revoked clients, so a revoked client's login is refused the way an
unknown client's is (version 3: 1606; version 4: reconnect denied, and its name stays
taken). Everything else passes through to the engine unchanged.

- ``RegistrationRules``: what the operator configured (``--registration``,
  ``--register-allow``, ``--register-rate``, ``--register-rate-per-address``).
- ``RegistrationPolicy``: decides, given a name, the peer's address, the time and the
  invitation token the client carried (``tokens.TokenStore``).
- ``Revocations``: the revoked client ids, kept in ``revoked.json`` in the data directory.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import dataclasses
import fnmatch
import json
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from eft_protocol.registry import ClientRecord, ClientRecordV4, FileRecord, FileRecordV4

from .registry import ServerRegistry
from .storage import FILE_MODE, _fsync_directory
from .tokens import TOKEN_REFUSALS, TokenStore

#: ``token``: only invitation tokens admit a new name (``allowlist`` takes them too,
#: for names its patterns do not cover).
MODES = ("open", "allowlist", "token", "closed")
#: A v4 client's LastSeen is written at most once a second by one server process.
LAST_SEEN_RESOLUTION = 1.0
MAX_LAST_SEEN_KEPT = 100_000
#: The ``reason`` label of ``eft_registrations_refused_total`` (a fixed set).
REFUSAL_REASONS = (
    "closed",
    "not_allowed",
    "revoked",
    "rate_limited",
    "rate_limited_address",
    *TOKEN_REFUSALS,
)
#: Rate limits count registrations over this window.
RATE_WINDOW = 60.0
#: Addresses remembered by the per-address limit before the idle ones are swept.
_ADDRESS_SWEEP_AT = 10_000

REVOKED_FILE = "revoked.json"

#: The peer address of the connection being served (set per connection task by the
#: server), for the per-address rate limit: the sessions do not know addresses.
connection_peer: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "eft_connection_peer", default=None
)


@dataclass(frozen=True)
class RegistrationRules:
    mode: str = "open"
    #: Names and glob patterns (``fnmatch``, case-sensitive) that may register.
    allow: tuple[str, ...] = ()
    #: New registrations per minute, server-wide; None: no limit.
    rate: int | None = None
    #: New registrations per minute from one address; None: no limit.
    rate_per_address: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "registration": self.mode,
            "register_allow": len(self.allow),
            "register_rate": self.rate,
            "register_rate_per_address": self.rate_per_address,
        }


class RegistrationPolicy:
    """Decides whether a new name may be registered now. Admissions are counted for the
    rate limits as they are granted: the session registers the name right after."""

    def __init__(self, rules: RegistrationRules, tokens: TokenStore | None = None) -> None:
        self.rules = rules
        self.tokens = tokens if tokens is not None else TokenStore(None)
        self._recent: deque[float] = deque()
        self._recent_by_address: dict[str, deque[float]] = {}

    def refusal(self, name: str, address: str | None, now: float, token: bytes = b"") -> str | None:
        rules = self.rules
        if rules.mode == "closed":
            return "closed"
        invitation = None
        if rules.mode == "token" or (
            rules.mode == "allowlist"
            and not any(fnmatch.fnmatchcase(name, pattern) for pattern in rules.allow)
        ):
            if rules.mode == "allowlist" and not token:
                return "not_allowed"
            reason, invitation = self.tokens.check(token, name, now)
            if reason is not None:
                return reason
        since = now - RATE_WINDOW
        _expire(self._recent, since)
        if rules.rate is not None and len(self._recent) >= rules.rate:
            return "rate_limited"
        by_address = None
        if rules.rate_per_address is not None and address is not None:
            if len(self._recent_by_address) >= _ADDRESS_SWEEP_AT:
                self._sweep(since)
            by_address = self._recent_by_address.setdefault(address, deque())
            _expire(by_address, since)
            if len(by_address) >= rules.rate_per_address:
                return "rate_limited_address"
        if rules.rate is not None:
            self._recent.append(now)
        if by_address is not None:
            by_address.append(now)
        if invitation is not None:  # granted: its use is spent before the answer
            self.tokens.spend(invitation, name)
        return None

    def _sweep(self, since: float) -> None:
        for address in list(self._recent_by_address):
            times = self._recent_by_address[address]
            _expire(times, since)
            if not times:
                del self._recent_by_address[address]


def _expire(times: deque[float], since: float) -> None:
    while times and times[0] <= since:
        times.popleft()


class Revocations:
    """Revoked client ids, by protocol version; saved atomically in ``revoked.json``
    (None: in memory only, for ``--ephemeral``). Small: an operator's list."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._revoked: dict[int, set[bytes]] = {3: set(), 4: set()}
        if path is not None and path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            for version in (3, 4):
                self._revoked[version] = {bytes.fromhex(h) for h in data.get(f"v{version}", [])}

    def __contains__(self, key: tuple[int, bytes]) -> bool:
        version, client_id = key
        return client_id in self._revoked[version]

    def revoked(self, version: int) -> frozenset[bytes]:
        return frozenset(self._revoked[version])

    def revoke(self, version: int, client_id: bytes) -> None:
        self._revoked[version].add(client_id)
        self._save()

    def restore(self, version: int, client_id: bytes) -> None:
        if client_id in self._revoked[version]:
            self._revoked[version].discard(client_id)
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        data = {f"v{v}": sorted(c.hex() for c in ids) for v, ids in self._revoked.items()}
        temp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)
        _fsync_directory(self.path.parent)


class GatedRegistry:
    """``ServerRegistry`` with the policy in front: see the module's docstring."""

    def __init__(
        self,
        engine: ServerRegistry,
        policy: RegistrationPolicy,
        revocations: Revocations,
        on_refused: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.revocations = revocations
        self.on_refused = on_refused
        self.log: Any = structlog.get_logger("eft.registration")
        #: The LastSeen this process last wrote per v4 key (``save_client_v4``).
        self._last_seen_written: dict[bytes, float] = {}

    # --- the core's RegistrationGate ----------------------------------------------------

    def refuse_registration(
        self, name: str, client_id: bytes, version: int, now: float, token: bytes = b""
    ) -> str | None:
        address = connection_peer.get()
        if (version, client_id) in self.revocations:
            reason: str | None = "revoked"
        else:
            reason = self.policy.refusal(name, address, now, token)
        if reason is not None:
            self.on_refused(reason)
            self.log.warning(
                "registration_policy_refused",
                reason=reason,
                name=name,
                address=address,
                version=version,
            )
        return reason

    # --- lookups that hide revoked clients ------------------------------------------------

    def client_by_id(self, client_id: bytes) -> ClientRecord | None:
        if (3, client_id) in self.revocations:
            return None
        return self.engine.client_by_id(client_id)

    def client_v4_by_key(self, static_public: bytes) -> ClientRecordV4 | None:
        record = self.engine.client_v4_by_key(static_public)
        if record is not None and (4, record.client_id) in self.revocations:
            return None
        return record

    def client_v4_by_id(self, client_id: bytes) -> ClientRecordV4 | None:
        if (4, client_id) in self.revocations:
            return None
        return self.engine.client_v4_by_id(client_id)

    # --- the rest, unchanged ----------------------------------------------------------
    # (A revoked client's name stays taken: ``client_by_name`` finds it.)

    def client_by_name(self, name: str) -> ClientRecord | None:
        return self.engine.client_by_name(name)

    def client_v4_by_name(self, name: str) -> ClientRecordV4 | None:
        return self.engine.client_v4_by_name(name)

    def save_client(self, record: ClientRecord) -> None:
        self.engine.save_client(record)

    def forget_client(self, client_id: bytes) -> None:
        self.engine.forget_client(client_id)

    def save_client_v4(self, record: ClientRecordV4) -> None:
        if self._seen_just_now(record):
            return  # only LastSeen would change, by less than a second
        self.engine.save_client_v4(record)
        if len(self._last_seen_written) >= MAX_LAST_SEEN_KEPT:
            self._last_seen_written.clear()
        self._last_seen_written[record.static_public] = record.last_seen

    def _seen_just_now(self, record: ClientRecordV4) -> bool:
        """A log-in (or a repeated registration) of a client this server wrote less than
        ``LAST_SEEN_RESOLUTION`` ago: the registry write, and the wait for it before the
        welcome, were the largest cost of a v4 log-in after the DH (docs/PERFORMANCE.md).
        Only this process's own writes count, so a restarted server writes at once."""
        written = self._last_seen_written.get(record.static_public)
        if written is None or not 0 <= record.last_seen - written < LAST_SEEN_RESOLUTION:
            return False
        stored = self.engine.client_v4_by_key(record.static_public)
        return stored is not None and dataclasses.replace(stored, last_seen=record.last_seen) == (
            record
        )

    def forget_client_v4(self, static_public: bytes) -> None:
        self._last_seen_written.pop(static_public, None)
        self.engine.forget_client_v4(static_public)

    def clients(self) -> Iterable[ClientRecord]:
        return self.engine.clients()

    def clients_v4(self) -> Iterable[ClientRecordV4]:
        return self.engine.clients_v4()

    def client_count(self) -> int:
        return self.engine.client_count()

    def file(self, client_id: bytes, file_name: str) -> FileRecord | None:
        return self.engine.file(client_id, file_name)

    def save_file(self, record: FileRecord) -> None:
        self.engine.save_file(record)

    def forget_file(self, client_id: bytes, file_name: str) -> None:
        self.engine.forget_file(client_id, file_name)

    def files(self) -> Iterable[FileRecord]:
        return self.engine.files()

    def file_v4(self, client_id: bytes, file_name: str) -> FileRecordV4 | None:
        return self.engine.file_v4(client_id, file_name)

    def save_file_v4(self, record: FileRecordV4) -> None:
        self.engine.save_file_v4(record)

    def forget_file_v4(self, client_id: bytes, file_name: str) -> None:
        self.engine.forget_file_v4(client_id, file_name)

    def files_v4(self) -> Iterable[FileRecordV4]:
        return self.engine.files_v4()

    def flush(self) -> concurrent.futures.Future[None] | None:
        return self.engine.flush()

    def revert(self, flushed: concurrent.futures.Future[None]) -> None:
        self.engine.revert(flushed)

    def close(self) -> None:
        self.engine.close()
