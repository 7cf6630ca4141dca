"""``eft-server``: parse settings, configure logs, run the server until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import warnings
from collections.abc import Sequence

import structlog

from .app import Server
from .config import PortInfoWarning, ServerConfig, load_config
from .data_lock import DataDirLocked
from .log import configure_logging
from .pg_connect import RegistryUrlError
from .pg_schema import SchemaTooNew
from .registry_errors import RegistryError
from .startup import DataDirUnusable, RegistryUnavailable, StartupError

#: Another server holds the data directory (the other start-up failures' codes are in
#: startup.py; the README lists them all).
EXIT_DATA_DIR_LOCKED = 6


def main(argv: Sequence[str] | None = None) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PortInfoWarning)
        config = load_config(argv)
    configure_logging(config.log_format, config.log_level)
    log = structlog.get_logger("eft.server")
    for warning in caught:
        log.warning("port_info", message=str(warning.message))
    try:
        _run(_serve(config))
    except DataDirLocked as exc:
        log.error(
            "data_dir_locked",
            data_dir=str(config.data_dir),
            message=str(exc),
            exit_code=EXIT_DATA_DIR_LOCKED,
        )
        return EXIT_DATA_DIR_LOCKED
    except StartupError as exc:
        log.error(exc.event, message=str(exc), exit_code=exc.exit_code, **exc.fields)
        return exc.exit_code
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(config: ServerConfig) -> None:
    try:
        server = Server(config)
    except (RegistryUrlError, RegistryError, SchemaTooNew, ImportError) as exc:
        raise RegistryUnavailable.because(_where(config.registry), exc) from exc
    except (OSError, sqlite3.Error) as exc:  # a file in its place, no permission, bad db
        raise DataDirUnusable.at(config.data_dir, exc) from exc
    await server.start()
    await server.serve_until_stopped()


def _where(url: str | None) -> str:
    """The registry for a message: without what a URL should not hold anyway."""
    return "(none)" if url is None else url.split("@")[-1].split("?")[0]


def _run(coro: object) -> None:
    try:
        import uvloop  # noqa: PLC0415 - optional: absent on Windows
    except ImportError:  # Windows has no uvloop: asyncio's own loop serves as well
        asyncio.run(coro)  # type: ignore[arg-type]
        return
    uvloop.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
