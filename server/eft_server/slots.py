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

import itertools
from dataclasses import dataclass
from typing import Any, Protocol


class Authenticating(Protocol):
    @property
    def authenticated(self) -> bool: ...


class Transported(Protocol):
    """Whatever holds the connection's transport: its StreamWriter, or the listener's
    front end (``front.Front``) while no task serves it yet."""

    @property
    def transport(self) -> Any: ...


@dataclass(eq=False)
class Slot:
    """One accepted connection's place."""

    host: str | None
    writer: Transported
    #: The connection, once its first header chose a version.
    connection: Authenticating | None = None

    @property
    def authenticated(self) -> bool:
        return self.connection is not None and self.connection.authenticated

    def shed(self) -> None:
        """Close at once: the connection's loop sees the end of its stream and cleans up."""
        self.writer.transport.abort()


class Slots:
    """The taken places, and per address those not (known to be) authenticated.

    A flood keeps the server full and every newcomer sheds one of its connections, so
    choosing the victim must not walk every place (it did: about 200 µs per accept
    with 1,000 places, issue 18). Authentication is monotone, reported by the
    connection (``authenticated``): each address keeps its waiting slots in the order
    of their accepts, and the choice walks the addresses, not the places. A slot that
    authenticated without the report is still never shed (the oldest waiting one is
    checked before it is chosen); only its address's count is one too high meanwhile.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        #: Each slot's accept number (ties go to the oldest), in the order of the accepts.
        self._taken: dict[Slot, int] = {}
        #: Per address, its slots not yet known to be authenticated, oldest first.
        self._waiting: dict[str | None, dict[Slot, None]] = {}
        self._accepts = itertools.count()

    def __len__(self) -> int:
        return len(self._taken)

    @property
    def full(self) -> bool:
        return len(self._taken) >= self.capacity

    def take(self, slot: Slot) -> None:
        self._taken[slot] = next(self._accepts)
        if not slot.authenticated:
            self._waiting.setdefault(slot.host, {})[slot] = None

    def authenticated(self, slot: Slot) -> None:
        """``slot``'s connection authenticated: it no longer counts as waiting."""
        self._forget_waiting(slot)

    def give_back(self, slot: Slot) -> None:
        self._taken.pop(slot, None)
        self._forget_waiting(slot)

    def _forget_waiting(self, slot: Slot) -> None:
        same_host = self._waiting.get(slot.host)
        if same_host is not None:
            same_host.pop(slot, None)
            if not same_host:
                del self._waiting[slot.host]

    def unauthenticated_from(self, host: str | None) -> int:
        """Connections from ``host`` not authenticated yet (``--max-handshakes-per-address``)."""
        return len(self._waiting.get(host, ()))

    def _oldest_waiting(self, host: str | None) -> Slot | None:
        """``host``'s oldest waiting slot, or None if it turns out authenticated
        (unreported): it then stops counting as waiting."""
        slot = next(iter(self._waiting[host]))
        if slot.authenticated:
            self._forget_waiting(slot)
            return None
        return slot

    def shed_candidate(self) -> Slot | None:
        """The oldest unauthenticated connection of the address holding the most of
        them (on a tie, the address whose oldest one is oldest); None if every place
        is authenticated."""
        while self._waiting:
            most = max(len(waiting) for waiting in self._waiting.values())
            busiest = [host for host, waiting in self._waiting.items() if len(waiting) == most]
            oldest = [self._oldest_waiting(host) for host in busiest]
            if all(len(self._waiting.get(host, ())) == most for host in busiest):
                # No count changed on the way: the choice stands.
                return min((s for s in oldest if s is not None), key=self._taken.__getitem__)
        return None


class ShedTally:
    """The sheds counted per address, for one log line a second instead of one per shed.

    Under an idle-socket flood every newcomer sheds one of the flood's connections, a
    thousand a second and more; a warning line each (and the socket's address looked up
    for it) was most of what shedding cost the server (issue 18). The metric
    ``eft_connections_shed_total`` still counts every one; the log says when shedding
    starts (the first shed after a quiet ``interval``, at once) and then how many, from
    which addresses, at most once per ``interval``. No clock here: the caller passes
    the time in and keeps the timer that logs what is left.
    """

    #: Addresses named in one line, the most shed first; the rest are only counted.
    ADDRESSES_NAMED = 5

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._counts: dict[str | None, int] = {}
        self._logged_at: float | None = None

    def add(self, host: str | None, now: float) -> float:
        """Count one shed from ``host``: in how many seconds a line is due (0: now)."""
        self._counts[host] = self._counts.get(host, 0) + 1
        if self._logged_at is None:
            return 0.0
        return max(0.0, self._logged_at + self.interval - now)

    @property
    def pending(self) -> int:
        return sum(self._counts.values())

    def take(self, now: float) -> dict[str, object]:
        """The fields of the line for the sheds counted since the last one; resets."""
        counts, self._counts = self._counts, {}
        self._logged_at = now
        busiest = sorted(counts.items(), key=lambda item: -item[1])[: self.ADDRESSES_NAMED]
        return {
            "shed": sum(counts.values()),
            "addresses": {str(host): count for host, count in busiest},
        }
