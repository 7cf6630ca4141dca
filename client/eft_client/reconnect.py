"""The retry rule for broken connections, shared by both protocol versions.

A connection that breaks after it was established is replaced after an exponential
backoff with jitter, for as long as ``settings.retry_for`` seconds since it broke (a
server being restarted is back within that), and at most ``settings.retries`` times
when a count is given. Once the run has made progress again (``progress()``, the files
verified, has grown), the next break starts a new window: a server that accepts and
breaks every connection without ever storing a file is given up on after one window.
A first connection that fails is a wrong address or a stopped server: that is said at
once, since only a session that worked once is worth waiting for.
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
    progress: Callable[[], int] = lambda: 0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    retries = 0
    broke_at: float | None = None  # when the window began: a break after progress
    progress_at_break = progress()
    while True:
        try:
            await connect_once()
            return
        except retryable as exc:
            now = clock()
            connected = not isinstance(exc, CannotConnect)
            if connected and (broke_at is None or progress() > progress_at_break):
                broke_at, progress_at_break = now, progress()
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
