"""Which message 1s the server answers with a Diffie-Hellman, and which it does not.

Answering message 1 costs the server a key generation and three DH (docs/PERFORMANCE.md)
before the client has proven anything, and a message 1 can be replayed byte for byte.
So, as WireGuard does with its cookie reply, a server **under load** answers a message 1
that carries no valid cookie with a *cookie reply* (no DH, one BLAKE2s): the cookie is a
MAC, under a secret that changes every ``COOKIE_ROTATION`` seconds, of the source
address and the client's ephemeral key. The client sends message 1 again with it (same
ephemeral key), which proves it receives at that address, and only then is the DH done.

"Under load" is a CPU budget: more than ``cookies_above`` message 1s answered with a DH
in the last second (0: always), and, as in WireGuard, for ``load_hold`` seconds after
the budget was last found spent. Without the hold a flood that ignores cookies takes
the whole budget for ever: its own DH answers make the load, the cookie replies that
follow end it within a second, and the flood gets DH again (about ``cookies_above`` a
second, issue 18). With it the flood gets about ``cookies_above`` DH per hold; a
client that follows the cookie (ours does) pays one round trip more meanwhile, no DH.
Beside it, ``rate_per_address`` caps the DH answers per
second per source address (a token bucket; None: no cap), so that an attacker who does
follow cookies still gets only its share. Both are off or generous by default: the
bench and the lab send everything from 127.0.0.1.

No clock and no sockets here: the time and the source address come in as arguments.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import itertools
import secrets
from collections.abc import Callable

COOKIE_SIZE = 16
#: Seconds a secret makes cookies; a cookie of the previous secret is still accepted,
#: so a cookie lives 2 to 4 minutes.
COOKIE_ROTATION = 120.0
COOKIE_LABEL = b"eft/4 cookie"
#: Per-address buckets kept before full (idle) ones are forgotten.
MAX_TRACKED_ADDRESSES = 4096
#: Seconds a server stays under load once its DH budget was found spent (the server's
#: choice; ``HelloGate`` holds none unless given one).
UNDER_LOAD_HOLD = 5.0


class Admission(enum.Enum):
    ANSWER = "answer"  # do the DH: message 2
    COOKIE = "cookie"  # under load and no valid cookie: a cookie reply, no DH
    RATE_LIMITED = "rate_limited"  # this address had its share of DH: close


class HelloGate:
    """Server-wide: one per server, shared by every connection's session."""

    def __init__(
        self,
        *,
        cookies_above: int | None = None,
        rate_per_address: int | None = None,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        rotation: float = COOKIE_ROTATION,
        load_hold: float = 0.0,
    ) -> None:
        self.cookies_above = cookies_above  # None: never ask for cookies
        self.load_hold = load_hold
        #: Under load until then, whatever the estimate (the hold).
        self._loaded_until: float | None = None
        self.rate_per_address = rate_per_address
        self._random_bytes = random_bytes
        self._rotation = rotation
        self._epoch: int | None = None
        self._secret = b""
        self._previous = b""
        # DH answers per whole second: this one and the one before (a sliding estimate).
        self._second = 0
        self._this_second = 0
        self._last_second = 0
        self._buckets: dict[bytes, tuple[float, float]] = {}  # address: (tokens, at)
        #: Message 1s answered with a DH since start (the bounded quantity under a flood).
        self.answered = 0
        self.cookies_sent = 0
        self.rate_limited = 0

    # --- load ---------------------------------------------------------------------------

    def _roll(self, now: float) -> None:
        second = int(now)
        if second != self._second:
            self._last_second = self._this_second if second == self._second + 1 else 0
            self._this_second, self._second = 0, second

    def recent_answers(self, now: float) -> float:
        """DH answers in the last second, estimated from this second and the one before."""
        self._roll(now)
        return self._this_second + self._last_second * (1.0 - (now - int(now)))

    def under_load(self, now: float) -> bool:
        if self.cookies_above is None:
            return False
        if self.recent_answers(now) >= self.cookies_above:
            if self.load_hold > 0:
                self._loaded_until = now + self.load_hold
            return True
        until = self._loaded_until  # a clock stepped back before the hold began ends it
        return until is not None and until - self.load_hold <= now < until

    # --- cookies ------------------------------------------------------------------------

    def _secrets(self, now: float) -> tuple[bytes, bytes]:
        epoch = int(now // self._rotation)
        if epoch != self._epoch:
            # A secret older than one rotation is dropped; after a long quiet spell, both.
            fresh = self._random_bytes(32)
            self._previous = self._secret if self._epoch == epoch - 1 else b""
            self._secret, self._epoch = fresh, epoch
        return self._secret, self._previous

    def cookie_for(self, address: bytes, ephemeral: bytes, now: float) -> bytes:
        return make_cookie(self._secrets(now)[0], address, ephemeral)

    def cookie_valid(self, cookie: bytes, address: bytes, ephemeral: bytes, now: float) -> bool:
        if len(cookie) != COOKIE_SIZE:
            return False
        return any(
            secret and hmac.compare_digest(cookie, make_cookie(secret, address, ephemeral))
            for secret in self._secrets(now)
        )

    # --- per address --------------------------------------------------------------------

    def _take_token(self, address: bytes, now: float) -> bool:
        rate = self.rate_per_address
        if rate is None:
            return True
        buckets = self._buckets
        # Popped and put back: the dict's order is the order of last use.
        tokens, at = buckets.pop(address, (float(rate), now))
        tokens = min(float(rate), tokens + max(0.0, now - at) * rate)  # clock steps
        allowed = tokens >= 1.0
        buckets[address] = (tokens - 1.0 if allowed else tokens, now)
        if len(buckets) > MAX_TRACKED_ADDRESSES:
            # Forget the least recently seen half at once (O(1) a message 1 on average,
            # however many addresses a flood uses); a forgotten address starts full.
            for key in list(itertools.islice(buckets, MAX_TRACKED_ADDRESSES // 2)):
                del buckets[key]
        return allowed

    # --- the decision -------------------------------------------------------------------

    def admit(self, address: bytes, ephemeral: bytes, cookie: bytes, now: float) -> Admission:
        """What to do with a message 1 from ``address`` (packed IP) whose ephemeral key
        is ``ephemeral`` and whose offer carried ``cookie`` (empty: none)."""
        if self.under_load(now) and not self.cookie_valid(cookie, address, ephemeral, now):
            self.cookies_sent += 1
            return Admission.COOKIE
        if not self._take_token(address, now):
            self.rate_limited += 1
            return Admission.RATE_LIMITED
        self._roll(now)
        self._this_second += 1
        self.answered += 1
        return Admission.ANSWER


def make_cookie(secret: bytes, address: bytes, ephemeral: bytes) -> bytes:
    """BLAKE2s-128 keyed by the secret, over the label, the address and the ephemeral key
    (a length byte before the address: IPv4 and IPv6 never collide)."""
    data = COOKIE_LABEL + bytes([len(address)]) + address + ephemeral
    return hashlib.blake2s(data, key=secret, digest_size=COOKIE_SIZE).digest()
