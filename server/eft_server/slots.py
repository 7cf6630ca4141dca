"""The places under ``--max-connections``, and whom to shed when they are all taken.

Silent sockets cost an attacker nothing. If the server refused newcomers once full, a
few thousand of them would lock every client out (EFT-15, docs/SECURITY.md). So at the
cap the server closes a connection that has not authenticated yet (no completed
825/827, or version 4's handshake and intent) to admit the newcomer: the oldest one of
the address holding the most such connections, so a flood from one address sheds
itself and not the legitimate clients connecting meanwhile. Authenticated sessions are
never shed for an unauthenticated newcomer: with every place authenticated, the
newcomer is refused.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Protocol


class Authenticating(Protocol):
    @property
    def authenticated(self) -> bool: ...


@dataclass(eq=False)
class Slot:
    """One accepted connection's place."""

    host: str | None
    writer: asyncio.StreamWriter
    #: The connection, once its first header chose a version.
    connection: Authenticating | None = None

    @property
    def authenticated(self) -> bool:
        return self.connection is not None and self.connection.authenticated

    def shed(self) -> None:
        """Close at once: the connection's loop sees the end of its stream and cleans up."""
        self.writer.transport.abort()


class Slots:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._taken: dict[Slot, None] = {}  # in the order of the accepts: oldest first
        self._by_host: dict[str | None, dict[Slot, None]] = {}

    def __len__(self) -> int:
        return len(self._taken)

    @property
    def full(self) -> bool:
        return len(self._taken) >= self.capacity

    def take(self, slot: Slot) -> None:
        self._taken[slot] = None
        self._by_host.setdefault(slot.host, {})[slot] = None

    def give_back(self, slot: Slot) -> None:
        self._taken.pop(slot, None)
        same_host = self._by_host.get(slot.host)
        if same_host is not None:
            same_host.pop(slot, None)
            if not same_host:
                del self._by_host[slot.host]

    def unauthenticated_from(self, host: str | None) -> int:
        """Connections from ``host`` not authenticated yet (``--max-handshakes-per-address``;
        walks that address's connections only)."""
        return sum(1 for slot in self._by_host.get(host, ()) if not slot.authenticated)

    def shed_candidate(self) -> Slot | None:
        """The oldest unauthenticated connection of the address holding the most of
        them; None if every place is authenticated."""
        waiting = [slot for slot in self._taken if not slot.authenticated]
        if not waiting:
            return None
        host = Counter(slot.host for slot in waiting).most_common(1)[0][0]
        return next(slot for slot in waiting if slot.host == host)
