"""The retry rule for broken connections, shared by both protocol versions.

A connection that breaks after it was established is replaced after an exponential
backoff with jitter, for as long as ``settings.retry_for`` seconds since it broke (a
server being restarted is back within that), and at most ``settings.retries`` times
when a count is given. A connection that then works and breaks again starts a new
window. A first connection that fails is a wrong address or a stopped server: that is
said at once, since only a session that worked once is worth waiting for.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .errors import CannotConnect, ConnectionLost
from .progress import Reporter

if TYPE_CHECKING:
    from .settings import ClientSettings

Retryable = tuple[type[Exception], ...]


async def with_reconnects(
    settings: ClientSettings,
    reporter: Reporter,
    connect_once: Callable[[], Awaitable[None]],
    retryable: Retryable = (ConnectionLost, CannotConnect),
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    retries = 0
    broke_at: float | None = None  # when the last working connection broke
    while True:
        try:
            await connect_once()
            return
        except retryable as exc:
            now = clock()
            if not isinstance(exc, CannotConnect):  # it had connected: a new window
                broke_at = now
            if broke_at is None:
                raise  # never connected at all
            waited = now - broke_at
            if settings.retries is not None and retries >= settings.retries:
                raise
            if waited >= settings.retry_for:
                raise
            retries += 1
            delay = min(settings.backoff_cap, settings.backoff * 2 ** (retries - 1))
            delay *= 0.5 + random.random() / 2  # jitter: clients that broke together spread out
            delay = min(delay, settings.retry_for - waited)
            reporter.event(
                "connection_retry",
                error=str(exc),
                retry=retries,
                retries=settings.retries,
                delay=round(delay, 2),
                give_up_in=round(settings.retry_for - waited, 1),
            )
            await sleep(delay)
