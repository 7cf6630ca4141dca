"""``eft-client``: send files to an eft server (protocol version 3).

Settings: flags, then ``EFT_*`` variables, then ``transfer.info`` in the config directory.
Exit codes are listed in ``errors.ExitCode`` and the README.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from eft_protocol import __version__
from eft_protocol.codes import DEFAULT_PACKET_SIZE, MAX_TOKEN

from . import config
from .errors import ClientError, ConfigError, ExitCode, InternalError
from .known_servers import ServerPins
from .progress import BarReporter, JsonReporter, LineReporter, Reporter
from .settings import ClientSettings

if TYPE_CHECKING:
    from .transfer_v4 import V4Options

# Version 4's modules (Noise, scrypt, ...) are imported only when version 4 runs: a
# version-3 upload does not pay for them at start-up (docs/PERFORMANCE.md).


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eft-client",
        description="Send files, encrypted, to an eft server (protocol version 4, or 3).",
        epilog="Without FILE the file on line 3 of transfer.info is sent. Exit codes: 0 ok, "
        "2 usage or configuration, 3 cannot connect or connection lost, 4 registration "
        "refused, 5 integrity failed after the last retry, 6 server error, 7 the server's "
        "key is not the trusted one, 8 the server could not store the file, 9 the stored "
        "identity was kept (another name, or a version-3 1606), 10 the server has no room "
        "for the file (no space, over quota), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE|DIR",
        help="files to send, and folders (version 4: each tree, under the folder's name)",
    )
    parser.add_argument("--server", help="HOST:PORT (EFT_SERVER; transfer.info line 1)")
    parser.add_argument("--name", help="user name, at most 100 characters (EFT_NAME; line 2)")
    parser.add_argument(
        "--config-dir",
        type=Path,
        help="one directory for transfer.info, the identity, known_servers and uploads.json "
        "(EFT_CONFIG_DIR). Default: the working directory if it holds transfer.info, me.info "
        "or me4.info (the seed's layout), else $XDG_CONFIG_HOME/eft and $XDG_STATE_HOME/eft, "
        "one identity per server (docs/IDENTITY.md)",
    )
    parser.add_argument(
        "--re-register",
        action="store_true",
        help="register a new identity although one is stored (for another name, or after "
        "a version-3 server denied it); the old files are kept as *.replaced-<time>",
    )
    parser.add_argument(
        "--packet-size",
        type=int,
        help=f"ciphertext bytes per 828 packet (EFT_PACKET_SIZE; default {DEFAULT_PACKET_SIZE})",
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds to wait for the server (EFT_TIMEOUT; default 60)"
    )
    parser.add_argument(
        "--connect-timeout", type=float, help="seconds to connect (EFT_CONNECT_TIMEOUT; default 10)"
    )
    parser.add_argument(
        "--source-address",
        metavar="ADDRESS",
        help="local address to connect from, on a host with several (EFT_SOURCE_ADDRESS)",
    )
    parser.add_argument(
        "--retry-for",
        type=float,
        metavar="SECONDS",
        help="after a connection breaks, keep reconnecting this long, e.g. while the server "
        "restarts (EFT_RETRY_FOR; default 60; 0: never)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        help="at most this many new connections after one breaks (EFT_RETRIES; default: "
        "as many as --retry-for allows)",
    )
    parser.add_argument(
        "--protocol",
        type=int,
        choices=(3, 4),
        help="4 (default): authenticated and encrypted; 3: the original protocol, for "
        "version-3 servers only (EFT_PROTOCOL)",
    )
    parser.add_argument(
        "--server-fingerprint",
        help="the server's key, SHA256:... (version 4; transfer.info line 4); without it "
        "the first contact's key is trusted and remembered in known_servers",
    )
    parser.add_argument(
        "--as",
        dest="stored_as",
        metavar="NAME",
        help="the name to store the one FILE under on the server (version 4): any UTF-8 "
        "name, or a relative path such as photos/2024/a.jpg",
    )
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        help="file holding the passphrase that protects me4.info (or EFT_PASSPHRASE)",
    )
    invitation = parser.add_mutually_exclusive_group()
    invitation.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="file holding the server operator's invitation token, sent when registering "
        "(or EFT_TOKEN_FILE, EFT_TOKEN)",
    )
    invitation.add_argument(
        "--token",
        help="the invitation token itself (other users may see command lines: prefer "
        "--token-file or EFT_TOKEN)",
    )
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="in folders, send what a symbolic link points to (default: skip it, with a warning)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="newline-delimited JSON events on stdout"
    )
    output.add_argument("--quiet", action="store_true", help="print errors only")
    return parser


def protocol_from(
    args: argparse.Namespace, environ: Mapping[str, str], settings: ClientSettings
) -> V4Options | None:
    """Version 4's options, or None to speak version 3: only when asked for, and never
    to a server whose version-4 key we know (that would be a downgrade)."""
    info = config.read_transfer_info(settings.config_dir / config.TRANSFER_INFO)
    fingerprint = (
        args.server_fingerprint or environ.get("EFT_SERVER_FINGERPRINT") or info.fingerprint
    )
    raw = args.protocol if args.protocol is not None else environ.get("EFT_PROTOCOL", "4")
    if str(raw) not in ("3", "4"):
        raise ConfigError(f"protocol {raw!r}: choose 3 or 4")
    protocol = int(raw)
    if protocol == 3:
        if args.stored_as is not None:
            raise ConfigError("--as is version 4's: version 3 stores each file's base name")
        server = f"{settings.host}:{settings.port}"
        pinned = fingerprint or ServerPins(settings.files.known_servers, server).pinned
        if pinned:
            raise ConfigError(
                f"refusing version 3 for {server}: its version-4 key {pinned} is known, "
                "and version 3 cannot authenticate it (remove the pin to force it)"
            )
        return None
    from .identity_v4 import read_passphrase  # noqa: PLC0415 - see the imports
    from .transfer_v4 import V4Options  # noqa: PLC0415

    passphrase = read_passphrase(args.passphrase_file, dict(environ))
    return V4Options(
        passphrase=passphrase,
        fingerprint=fingerprint,
        stored_as=args.stored_as,
        follow_symlinks=args.follow_symlinks,
    )


def settings_from(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[ClientSettings, list[Path]]:
    chosen = args.config_dir or (
        Path(environ["EFT_CONFIG_DIR"]) if environ.get("EFT_CONFIG_DIR") else None
    )
    config_dir = chosen or Path()
    info = config.read_transfer_info(config_dir / config.TRANSFER_INFO)
    server = args.server or environ.get("EFT_SERVER")
    if server:
        host, port = config.parse_address(server)
    elif info.host is not None and info.port is not None:
        host, port = info.host, info.port
    else:
        raise ConfigError(
            "no server: give --server HOST:PORT or write it on line 1 of transfer.info"
        )
    name = args.name or environ.get("EFT_NAME") or info.name
    if not name:
        raise ConfigError("no user name: give --name or write it on line 2 of transfer.info")
    config.check_name(name)
    files = list(args.files)
    if not files:
        if info.file is None:
            raise ConfigError(
                "no file to send: name one, or write its path on line 3 of transfer.info"
            )
        path = info.file if info.file.is_absolute() else config_dir / info.file
        files = [path]
    packet_size = args.packet_size or _int_env(environ, "EFT_PACKET_SIZE") or DEFAULT_PACKET_SIZE
    if packet_size < 1:
        raise ConfigError("--packet-size must be positive")
    if chosen is not None:
        _make_config_dir(config_dir)
    timeout = args.timeout or _float_env(environ, "EFT_TIMEOUT") or 60.0
    settings = ClientSettings(
        host=host,
        port=port,
        name=name,
        config_dir=config_dir,
        packet_size=packet_size,
        response_timeout=timeout,
        connect_timeout=args.connect_timeout or _float_env(environ, "EFT_CONNECT_TIMEOUT") or 10.0,
        source_address=args.source_address or environ.get("EFT_SOURCE_ADDRESS") or None,
        retries=_retries(args, environ),
        retry_for=_retry_for(args, environ),
        paths=config.locate(chosen, Path(), host, port, environ),
        re_register=args.re_register,
        token=_token(args, environ),
    )
    return settings, files


def _token(args: argparse.Namespace, environ: Mapping[str, str]) -> bytes:
    """The invitation token: --token-file, --token, EFT_TOKEN_FILE, then EFT_TOKEN."""
    text: str | None = args.token
    path = args.token_file or (
        Path(environ["EFT_TOKEN_FILE"]) if environ.get("EFT_TOKEN_FILE") else None
    )
    if path is not None and text is None:
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the token file {path}: {exc}") from None
    if text is None:
        text = environ.get("EFT_TOKEN", "").strip()
    if len(text) > MAX_TOKEN or not (text.isascii() and text.isprintable()) or " " in text:
        raise ConfigError(
            f"an invitation token is at most {MAX_TOKEN} printable ASCII characters, no spaces"
        )
    return text.encode("ascii")


def _make_config_dir(config_dir: Path) -> None:
    """The client keeps its identity and pins there: a new directory is made for it."""
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot use {config_dir} as the config directory: {exc.strerror or exc}"
        ) from None
    if not config_dir.is_dir():
        raise ConfigError(f"{config_dir} is not a directory (the config directory)")


def _retries(args: argparse.Namespace, environ: Mapping[str, str]) -> int | None:
    retries = args.retries if args.retries is not None else _int_env(environ, "EFT_RETRIES")
    if retries is not None and retries < 0:
        raise ConfigError("--retries cannot be negative")
    return retries


def _retry_for(args: argparse.Namespace, environ: Mapping[str, str]) -> float:
    seconds = args.retry_for if args.retry_for is not None else _float_env(environ, "EFT_RETRY_FOR")
    if seconds is None:
        return ClientSettings.retry_for
    if not seconds >= 0:  # also NaN
        raise ConfigError("--retry-for must be a number of seconds, 0 or more")
    return seconds


def _int_env(environ: Mapping[str, str], key: str) -> int | None:
    raw = environ.get(key)
    if raw is None:
        return None
    if not raw.isdigit():
        raise ConfigError(f"{key}={raw!r} is not a whole number")
    return int(raw)


def _float_env(environ: Mapping[str, str], key: str) -> float | None:
    raw = environ.get(key)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number") from None


def make_reporter(args: argparse.Namespace) -> Reporter:
    if args.json:
        return JsonReporter()
    if args.quiet:
        return Reporter()
    if sys.stderr.isatty():
        return BarReporter()
    return LineReporter()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reporter: Reporter | None = None
    try:
        settings, files = settings_from(args, os.environ)
        options = protocol_from(args, os.environ, settings)
        reporter = make_reporter(args)
        if options is not None:
            from .transfer_v4 import run_v4  # noqa: PLC0415 - see the imports

            _run(run_v4(settings, files, reporter, options))
        else:
            folders = [str(path) for path in files if path.is_dir()]
            if folders:
                raise ConfigError(
                    f"{folders[0]} is a folder: version 3 stores flat names only, so it "
                    "cannot send folders; send them with version 4 (--protocol 4)"
                )
            from .transfer import run  # noqa: PLC0415 - see the imports

            _run(run(settings, files, reporter))
    except ClientError as exc:
        return _fail(exc, reporter, args)
    except Exception as exc:  # a bug: said as one, exit 1 (as the C++ client does)
        traceback.print_exc()
        return _fail(InternalError(f"internal error: {exc!r}"), reporter, args)
    except KeyboardInterrupt:
        if reporter:
            # The last event, so a program reading --json knows the run ended, and how.
            reporter.event("interrupted", exit_code=int(ExitCode.INTERRUPTED))
            reporter.close()
        print("eft-client: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    if reporter:
        reporter.event("done", files=len(files))
        reporter.close()
    return ExitCode.SUCCESS


def _fail(error: ClientError, reporter: Reporter | None, args: argparse.Namespace) -> int:
    if reporter is not None:
        reporter.event("failed", error=str(error), exit_code=int(error.exit_code))
        reporter.close()
    print(f"eft-client: {error}", file=sys.stderr)
    if error.hint:
        print(f"  {error.hint}", file=sys.stderr)
    return int(error.exit_code)


def _run(coro: object) -> None:
    try:
        import uvloop  # noqa: PLC0415 - optional: absent on Windows
    except ImportError:  # Windows has no uvloop
        asyncio.run(coro)  # type: ignore[arg-type]
        return
    uvloop.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
