"""The retry rule for broken connections, shared by both protocol versions.

A connection that breaks after it was established is replaced, up to
``settings.retries`` times, after an exponential backoff with jitter. A first
connection that fails is a wrong address or a stopped server: that is said at once,
since only a session that worked once is worth waiting for.
"""

from __future__ import annotations

import asyncio
import random
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
) -> None:
    retries = 0
    while True:
        try:
            await connect_once()
            return
        except retryable as exc:
            never_connected = isinstance(exc, CannotConnect) and retries == 0
            if never_connected or retries >= settings.retries:
                raise
            retries += 1
            delay = min(settings.backoff_cap, settings.backoff * 2 ** (retries - 1))
            delay *= 0.5 + random.random() / 2  # jitter: clients that broke together spread out
            reporter.event(
                "connection_retry",
                error=str(exc),
                retry=retries,
                retries=settings.retries,
                delay=round(delay, 2),
            )
            await asyncio.sleep(delay)
