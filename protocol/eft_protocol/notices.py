"""What a session noticed, as typed effects both protocol versions return.

A notice is something worth a log line or a metric. Each kind is a class: the driver
logs ``event`` with ``fields`` and hands the notice to the metrics, which look it up by
its type (``eft_server.metrics``), so renaming a kind is a type error, not a metric that
silently stops counting. ``event`` is the log line's name and stays stable: operators'
queries and dashboards read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "ClientReconnected",
    "ClientRegistered",
    "ClosedSilently",
    "CookieSent",
    "HandshakeRateLimited",
    "HelloAnswered",
    "KeyExchanged",
    "NameRefused",
    "Notice",
    "PackStored",
    "QuietTransfer",
    "ReconnectRefused",
    "RequestRefused",
    "StorageFailure",
    "Transfer",
    "UploadResumed",
]


@dataclass(frozen=True, slots=True)
class Notice:
    """The base of every notice; ``fields`` go into the log line as they are."""

    event: ClassVar[str] = "notice"
    #: Logged at debug level: a kind a flood makes one of per packet.
    quiet: ClassVar[bool] = False
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClientRegistered(Notice):
    """1600 sent: a new client (or a known key under its own name, version 4)."""

    event: ClassVar[str] = "registered"


@dataclass(frozen=True, slots=True)
class NameRefused(Notice):
    """1601 sent: the name is taken."""

    event: ClassVar[str] = "registration_refused"


@dataclass(frozen=True, slots=True)
class KeyExchanged(Notice):
    """Version 3's 1602 sent: the connection has its AES key."""

    event: ClassVar[str] = "key_exchanged"


@dataclass(frozen=True, slots=True)
class ClientReconnected(Notice):
    """1605 sent."""

    event: ClassVar[str] = "reconnected"


@dataclass(frozen=True, slots=True)
class ReconnectRefused(Notice):
    """1606 sent: the server does not know this client (under this name, this key)."""

    event: ClassVar[str] = "reconnect_denied"


@dataclass(frozen=True, slots=True)
class Transfer(Notice):
    """One step in a file attempt's life: ``fields["outcome"]`` is one of
    ``TRANSFER_OUTCOMES``; ``bytes``, ``duration`` and ``version`` when known."""

    event: ClassVar[str] = "transfer"

    @property
    def outcome(self) -> str:
        outcome: str = self.fields["outcome"]
        return outcome


@dataclass(frozen=True, slots=True)
class QuietTransfer(Transfer):
    """A step logged at debug level: a streamed file's "received" and "verified"
    (version 4, several files in flight); its connection logs one ``files_streamed``
    line with their count and bytes instead. A folder of 10,000 small files would
    otherwise write two lines a file (issue 25). Counted in the metrics as any other."""

    quiet: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class PackStored(Notice):
    """A 904's files staged (version 4, feature PACK): ``files`` and ``bytes`` of those
    that will be stored with their group, ``sizes`` each, ``retried`` (digest differed)
    and ``refused`` counts. One notice a pack, at debug level: the metrics count each
    file as a verified transfer, and the connection's ``files_streamed`` line says how
    many there were."""

    event: ClassVar[str] = "pack_stored"
    quiet: ClassVar[bool] = True


#: Every outcome a ``Transfer`` notice can carry (a metric label's whole value set).
TRANSFER_OUTCOMES = ("received", "verified", "retried", "gave_up", "aborted", "error", "folder")


@dataclass(frozen=True, slots=True)
class UploadResumed(Notice):
    """Version 4: a resumed upload goes on from ``fields["chunk"]``."""

    event: ClassVar[str] = "resumed"


@dataclass(frozen=True, slots=True)
class StorageFailure(Notice):
    """The disk or the registry failed: not the peer's fault, an operator's concern."""

    event: ClassVar[str] = "storage_failed"


@dataclass(frozen=True, slots=True)
class RequestRefused(Notice):
    """Version 4's 1607: ``fields["error_code"]`` is the number sent."""

    event: ClassVar[str] = "request_refused"


@dataclass(frozen=True, slots=True)
class ClosedSilently(Notice):
    """Version 4 closed the connection without an answer, for ``fields["reason"]``."""

    event: ClassVar[str] = "connection_refused_v4"

    @property
    def reason(self) -> str:
        reason: str = self.fields["reason"]
        return reason


@dataclass(frozen=True, slots=True)
class CookieSent(Notice):
    """Version 4, under load: message 1 had no valid cookie and got a cookie reply (no
    DH). ``fields["stale"]``: it carried one, expired or for another address or key.
    Logged at debug level only: a flood makes one per message 1."""

    event: ClassVar[str] = "cookie_sent"
    quiet: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class HandshakeRateLimited(Notice):
    """Version 4: the source address had its share of DH answers this second
    (``--handshake-rate-per-address``); closed without an answer. Logged at debug level."""

    event: ClassVar[str] = "handshake_rate_limited"
    quiet: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class HelloAnswered(Notice):
    """Version 4's message 2 sent: the server did the DH for a message 1 (what a flood
    of message 1s costs, and what cookies bound). Logged at debug level."""

    event: ClassVar[str] = "hello_answered"
    quiet: ClassVar[bool] = True
