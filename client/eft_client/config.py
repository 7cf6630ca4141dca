"""The client's local files (spec section 7): transfer.info here, the names of all three,
where the identity, the pinned servers and the pending uploads live (``ClientPaths``,
docs/IDENTITY.md), and the private, atomic writer that me.info and priv.key go through
(``identity.py``, ``identity_v4.py``).

Readers are tolerant in the ways real files differ (C++ clients wrap the key at 72
characters and may pad lines with NULs); writers produce exactly the documented format,
atomically and readable by the owner only, since me.info holds a private key.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from eft_protocol.codes import MAX_USER_NAME

from .errors import ConfigError, IdentityConflict

TRANSFER_INFO = "transfer.info"
ME_INFO = "me.info"
PRIV_KEY = "priv.key"
ME4_INFO = "me4.info"
PRIV4_KEY = "priv4.key"
KNOWN_SERVERS = "known_servers"
UPLOADS = "uploads.json"


@dataclass(frozen=True)
class ClientPaths:
    """Where one run keeps its identity, its pinned servers and its pending uploads."""

    identity_dir: Path  # me.info and priv.key (version 3)
    identity_v4_dir: Path  # me4.info and priv4.key (version 4)
    known_servers: Path
    uploads: Path

    @classmethod
    def in_one_directory(cls, directory: Path) -> ClientPaths:
        """Everything in one directory: ``--config-dir`` (and the seed's layout)."""
        return cls(directory, directory, directory / KNOWN_SERVERS, directory / UPLOADS)


def server_directory_name(host: str, port: int) -> str:
    """``host_port``, with any character a file name may not hold (``:`` of IPv6 on
    Windows, ``/``) replaced by ``_``: one identity directory per server."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", host) + f"_{port}"


def user_directories(environ: Mapping[str, str]) -> tuple[Path, Path]:
    """The per-user config and state directories of eft: ``$XDG_CONFIG_HOME/eft`` and
    ``$XDG_STATE_HOME/eft`` (default ``~/.config/eft``, ``~/.local/state/eft``); on
    Windows ``%APPDATA%\\eft`` and ``%LOCALAPPDATA%\\eft``. A relative XDG value is
    ignored, as the XDG specification says."""
    home = Path(environ.get("HOME") or Path.home())

    def pick(variable: str, windows: str, default: Path) -> Path:
        value = environ.get(variable, "")
        if value and Path(value).is_absolute():
            return Path(value) / "eft"
        if os.name == "nt" and environ.get(windows):
            return Path(environ[windows]) / "eft"
        return default / "eft"

    return (
        pick("XDG_CONFIG_HOME", "APPDATA", home / ".config"),
        pick("XDG_STATE_HOME", "LOCALAPPDATA", home / ".local" / "state"),
    )


def locate(
    config_dir: Path | None, workdir: Path, host: str, port: int, environ: Mapping[str, str]
) -> ClientPaths:
    """docs/IDENTITY.md "Where": a directory given (--config-dir, EFT_CONFIG_DIR) holds
    everything; so does a working directory that holds the seed's files (transfer.info,
    or an identity: me.info, me4.info). Otherwise the per-user place: the identity in a
    directory of its own per server, known_servers beside them, uploads.json in the
    state directory."""
    if config_dir is not None:
        return ClientPaths.in_one_directory(config_dir)
    if any((workdir / name).exists() for name in (TRANSFER_INFO, ME_INFO, ME4_INFO)):
        return ClientPaths.in_one_directory(workdir)
    config_home, state_home = user_directories(environ)
    per_server = config_home / "servers" / server_directory_name(host, port)
    return ClientPaths(per_server, per_server, config_home / KNOWN_SERVERS, state_home / UPLOADS)


def make_private_directory(directory: Path) -> None:
    """Create ``directory`` (and its parents) for the client's files, 0700."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory}: {exc.strerror or exc}") from None


def check_name_matches(stored_name: str, wanted: str, path: Path, re_register: bool) -> bool:
    """Whether the identity in ``path`` may be used for ``wanted``: yes if the names are
    the same; no (register anew, the old one set aside when the new one is written) if
    the user said --re-register; otherwise ``IdentityConflict``, never a silent switch
    to the stored name nor a silent new registration."""
    if stored_name == wanted:
        return True
    if re_register:
        return False
    raise IdentityConflict(
        f"{path} is the identity of {stored_name!r}, but the name asked for is {wanted!r}; "
        f"use --name {stored_name!r}, or --re-register to register {wanted!r} instead"
    )


def set_aside(directory: Path, names: tuple[str, ...]) -> list[Path]:
    """Rename an identity's files to ``NAME.replaced-<UTC time>``, never deleting them:
    the user may restore them (docs/IDENTITY.md). Returns the new paths."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for name in names:
        source = directory / name
        if not source.exists():
            continue
        target = directory / f"{name}.replaced-{stamp}"
        suffix = 1
        while target.exists():
            suffix += 1
            target = directory / f"{name}.replaced-{stamp}-{suffix}"
        try:
            os.replace(source, target)
        except OSError as exc:
            raise ConfigError(f"cannot set {source} aside: {exc.strerror or exc}") from None
        moved.append(target)
    return moved


@dataclass(frozen=True)
class TransferInfo:
    host: str | None = None
    port: int | None = None
    name: str | None = None
    file: Path | None = None
    fingerprint: str | None = None  # line 4: the server's version-4 key, if configured


def _clean(line: str) -> str:
    return line.rstrip("\x00 \r\n\t")


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6-address]:port``."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{port_text!r} in {text!r} is not a port from 1 to 65535")
    return host, int(port_text)


def check_name(name: str) -> str:
    if not name:
        raise ConfigError("the user name is empty")
    if len(name) > MAX_USER_NAME:
        raise ConfigError(f"the user name is {len(name)} characters; at most {MAX_USER_NAME}")
    if not (name.isascii() and name.isprintable()):
        raise ConfigError(f"the user name {name!r} must be printable ASCII")
    return name


def read_transfer_info(path: Path) -> TransferInfo:
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        return TransferInfo()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    lines = [_clean(line) for line in lines]
    host = port = name = file = None
    if lines and lines[0]:
        try:
            host, port = parse_address(lines[0])
        except ConfigError as exc:
            raise ConfigError(f"{path} line 1: {exc}") from None
    if len(lines) > 1 and lines[1]:
        try:
            name = check_name(lines[1])
        except ConfigError as exc:
            raise ConfigError(f"{path} line 2: {exc}") from None
    if len(lines) > 2 and lines[2]:
        file = Path(lines[2])
    fingerprint = None
    if len(lines) > 3 and lines[3]:
        if not lines[3].startswith("SHA256:"):
            raise ConfigError(f"{path} line 4: a server fingerprint starts with SHA256:")
        fingerprint = lines[3]
    return TransferInfo(host, port, name, file, fingerprint)


def _write_private(path: Path, text: str) -> None:
    # Imported here: only a run that saves an identity writes a file this way, and
    # tempfile brings shutil, bz2 and lzma into every run's start-up otherwise.
    import tempfile  # noqa: PLC0415

    make_private_directory(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc}") from None
