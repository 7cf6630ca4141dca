"""eft's Python client: asyncio drivers around ``eft_protocol``'s client sessions.

``run`` (version 3) loads on first use: a version-4 client never needs RSA, and the
imports are most of a small upload's time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ClientError, ExitCode
from .settings import ClientSettings

if TYPE_CHECKING:
    from .transfer import run

__all__ = ["ClientError", "ClientSettings", "ExitCode", "run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from .transfer import run  # noqa: PLC0415 - loaded on first use, see above

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
