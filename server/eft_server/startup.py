"""Why the server could not start: each reason its own log event, message and exit code.

The exit codes are the server's part of the README's table; 2 (a bad flag or variable)
comes from argparse, 1 is a bug.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar


class StartupError(Exception):
    """The server stops before serving anyone; ``str()`` is the one-line message."""

    event: ClassVar[str] = "cannot_start"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields


class CannotListen(StartupError):
    event = "cannot_listen"
    exit_code = 3

    @classmethod
    def on(cls, host: str, port: int, error: OSError) -> CannotListen:
        return cls(
            f"cannot listen on {host}:{port}: {error.strerror or error} "
            "(another server on that port? choose one with --port)",
            host=host,
            port=port,
            error=str(error),
        )

    @classmethod
    def inherited(cls, fd: int, error: OSError) -> CannotListen:
        return cls(f"cannot serve on {error}", listen_fd=fd, error=str(error))


class MetricsUnavailable(StartupError):
    event = "cannot_serve_metrics"
    exit_code = 4

    @classmethod
    def on(cls, host: str, port: int, error: OSError) -> MetricsUnavailable:
        return cls(
            f"cannot serve metrics on {host}:{port}: {error.strerror or error} "
            "(choose another --metrics-port, or 0 for any free one)",
            metrics_host=host,
            metrics_port=port,
            error=str(error),
        )


class DataDirUnusable(StartupError):
    event = "data_dir_unusable"
    exit_code = 5

    @classmethod
    def at(cls, data_dir: Path, error: Exception) -> DataDirUnusable:
        reason = getattr(error, "strerror", None) or str(error)
        return cls(
            f"cannot use {data_dir} as the data directory: {reason}",
            data_dir=str(data_dir),
            error=str(error),
        )


class ServerKeyExposed(StartupError):
    """``server.key`` that others could read (or that belongs to someone else): whoever
    reads it can impersonate the server to every client that pinned it, so the server
    refuses it as sshd refuses such a host key, instead of serving with it silently."""

    event = "server_key_exposed"
    exit_code = 7

    @classmethod
    def too_open(cls, path: Path, mode: int) -> ServerKeyExposed:
        return cls(
            f"permissions {mode:04o} for {path} are too open: the server's private key "
            f"must not be accessible by others (chmod 600 {path})",
            path=str(path),
            mode=f"{mode:04o}",
        )

    @classmethod
    def not_owned(cls, path: Path, owner: int, user: int) -> ServerKeyExposed:
        return cls(
            f"{path} belongs to uid {owner}, not to the server's user (uid {user}): "
            f"whoever owns it can change the server's identity (chown {user} {path})",
            path=str(path),
            owner=owner,
            uid=user,
        )


class RegistryUnavailable(StartupError):
    """``--registry`` names a database the server cannot use: a bad URL, unreachable,
    credentials refused, or a schema newer than this server."""

    event = "registry_unavailable"
    exit_code = 8

    @classmethod
    def because(cls, where: str, error: BaseException) -> RegistryUnavailable:
        return cls(f"cannot use the registry {where}: {error}", registry=where, error=str(error))


class StoreUnusable(StartupError):
    """``--store s3://…`` that cannot be used: its settings, its endpoint, its
    credentials or its bucket. Checked before serving, so a misconfigured replica never
    accepts a file it cannot keep."""

    event = "store_unusable"
    exit_code = 9
