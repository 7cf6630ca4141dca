"""What can end a client run, each with its exit code and a hint for the user.

A class's docstring is the hint: it says what to do about it.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ExitCode(enum.IntEnum):
    SUCCESS = 0
    INTERNAL_ERROR = 1
    USAGE = 2
    CANNOT_CONNECT = 3
    REGISTRATION_REFUSED = 4
    INTEGRITY_FAILED = 5
    SERVER_ERROR = 6
    SERVER_IDENTITY = 7
    SERVER_STORAGE = 8
    IDENTITY = 9
    NO_ROOM = 10
    FILE_CHANGED = 11
    INTERRUPTED = 130


class ClientError(Exception):
    """Something went wrong."""

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL_ERROR

    @property
    def hint(self) -> str:
        return (type(self).__doc__ or "").strip()


class InternalError(ClientError):
    """A bug in eft-client: please report it with the output above."""

    exit_code = ExitCode.INTERNAL_ERROR


class ConfigError(ClientError):
    """Check transfer.info, me.info and the command line (eft-client --help)."""

    exit_code = ExitCode.USAGE


class CannotConnect(ClientError):
    """Check that the server runs and that host and port (transfer.info line 1) are right."""

    exit_code = ExitCode.CANNOT_CONNECT


class ConnectionLost(ClientError):
    """The network or the server failed mid-session; run the client again to retry."""

    exit_code = ExitCode.CANNOT_CONNECT


class RegistrationRefused(ClientError):
    """The name is taken on this server: choose another one (transfer.info line 2)."""

    exit_code = ExitCode.REGISTRATION_REFUSED


class IntegrityFailed(ClientError):
    """The server's CRC differed on every attempt: the data is being corrupted in transit."""

    exit_code = ExitCode.INTEGRITY_FAILED


class ServerFailed(ClientError):
    """The server kept failing or broke the protocol; see its logs, then try again."""

    exit_code = ExitCode.SERVER_ERROR


class ServerStorageFailed(ClientError):
    """The server could not store the file (its disk is full, read-only or failing):
    nothing of it was kept. Tell the server's operator, then send it again."""

    exit_code = ExitCode.SERVER_STORAGE


class ServerNoRoom(ClientError):
    """The server refused the file before its data: it has no space for it (its free
    space less its margin) or the file is over your quota there. Nothing was sent of it.
    Ask the server's operator for room, or send a smaller file."""

    exit_code = ExitCode.NO_ROOM


class ServerIdentityChanged(ClientError):
    """The server's key is not the one this client trusts: nothing was sent. Check with
    the server's operator before you trust a new key."""

    exit_code = ExitCode.SERVER_IDENTITY


class IdentityConflict(ClientError):
    """Nothing was deleted or replaced. If this is expected (another name, a server that
    lost its clients), run again with --re-register: a new identity is registered and the
    old files are kept aside as *.replaced-<time> (docs/IDENTITY.md)."""

    exit_code = ExitCode.IDENTITY


class FileChanged(ClientError):
    """A file changed while it was being sent (nothing wrong was stored): send it again
    once nothing writes to it."""

    exit_code = ExitCode.FILE_CHANGED
