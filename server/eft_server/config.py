"""Server settings: defaults, then ``port.info``, then ``EFT_*`` variables, then flags."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eft_protocol import __version__
from eft_protocol.codes import MAX_FILE_SIZE

from .log import LOG_FORMATS
from .registration_policy import RegistrationRules
from .s3_settings import parse_store_url

DEFAULT_PORT = 1256
PORT_FILE = "port.info"


class PortInfoWarning(UserWarning):
    pass


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"  # noqa: S104 - a server is meant to be reached
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=lambda: Path("data"))
    log_format: str = "auto"
    log_level: str = "info"
    #: Spec section 8: answer 901 with 1604, for clients that wait for it.
    answer_crc_retry: bool = False
    #: Port of the Prometheus endpoint; None: no endpoint.
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"  # noqa: S104
    #: A connection that sends nothing for this long is closed.
    idle_timeout: float = 120.0
    #: On SIGTERM, transfers in flight get this long to finish.
    shutdown_grace: float = 10.0
    #: Keep the registry in memory only (the seed's behaviour) instead of SQLite.
    ephemeral: bool = False
    #: Registry lookups the SQLite engine keeps in memory (its LRU cache).
    registry_cache: int = 10_000
    #: A PostgreSQL registry (``postgresql://host:port/dbname``) instead of SQLite.
    registry: str | None = None
    #: Connections beyond this are refused (closed at once, logged and counted).
    max_connections: int = 1000
    #: At ``max_connections``: ``shed`` closes the oldest connection not yet
    #: authenticated (from the address holding the most of them) to admit the newcomer;
    #: ``refuse`` refuses the newcomer (the old behaviour, which idle sockets exploit).
    when_full: str = "shed"
    #: Inside a frame, each read must arrive within this (slow or half-open peers).
    read_timeout: float = 30.0
    #: Register or reconnect and receive the AES key within this after connecting.
    handshake_timeout: float = 30.0
    #: Connections bound to one client id at the same time.
    max_sessions_per_client: int = 4
    #: Largest plaintext file accepted (version 3 cannot carry 4 GiB or more).
    max_file_size: int = MAX_FILE_SIZE
    #: Largest 828 payload; content is streamed, so this bounds time, not memory.
    max_packet_payload: int = 0xFFFFFFFF
    #: Temporary files untouched for this long are removed (crash leftovers).
    orphan_timeout: float = 3600.0
    #: Accept version-3 clients on the same port (its weaknesses: docs/SECURITY.md).
    legacy: str = "allow"
    #: Largest file over version 4 (64-bit sizes).
    max_file_size_v4: int = 1 << 40
    #: A broken version-4 upload can be resumed for this long.
    resume_ttl: float = 86400.0
    #: Unfinished version-4 uploads kept on disk, per client and server-wide (count
    #: and bytes received); beyond them the oldest idle ones are dropped.
    max_partial_uploads_per_client: int = 16
    max_partial_bytes_per_client: int = 16 << 30
    max_partial_uploads: int = 4096
    max_partial_bytes: int = 256 << 30
    #: Free bytes kept on the version-4 files' file system: a file that would leave less
    #: is refused before its data (1607 "no space").
    keep_free: int = 256 << 20
    #: Seconds between sweeps for leftovers; None: min(orphan_timeout / 2,
    #: resume_ttl / 2, 300).
    sweep_interval: float | None = None
    #: Version-4 records (up to 1 MiB each) being received at once, server-wide: a
    #: record is held whole until its tag is checked, so this bounds that memory.
    record_buffers: int = 32
    #: Record buffers one authenticated identity holds at once; its other connections wait.
    record_buffers_per_client: int = 4
    #: A record buffer is kept only while its bytes arrive at this rate (bytes/s),
    #: checked while another connection waits for a buffer; a slower holder is closed.
    record_min_rate: int = 64 * 1024
    #: Serve on this inherited, already listening socket instead of binding host:port
    #: (a supervisor, or a test, that keeps the port across restarts).
    listen_fd: int | None = None
    #: Who may register a new name: open, allowlist (``register_allow``; invitation
    #: tokens admit other names), token (invitation tokens only) or closed.
    registration: str = "open"
    #: Names and glob patterns that may register (``--register-allow``, and the file).
    register_allow: tuple[str, ...] = ()
    #: New registrations per minute, server-wide and per address; None: no limit.
    register_rate: int | None = None
    register_rate_per_address: int | None = None
    #: Unauthenticated connections (no completed 825/827, or v4 handshake and intent)
    #: from one source address at once; a newcomer beyond it is refused. None: no limit.
    max_handshakes_per_address: int | None = None
    #: Version-4 message 1s answered with a DH per second per source address (a token
    #: bucket, bursts of as many); beyond it the connection is closed. None: no limit.
    handshake_rate_per_address: int | None = None
    #: Version-4 message 1s answered with a DH per second, server-wide, above which a
    #: message 1 must carry a cookie (else a cookie reply, no DH). 0: always; -1: never.
    cookies_above: int = 256
    #: Where files go: None, the data directory; ``s3://bucket/prefix``, an S3 store
    #: (its endpoint and credentials from EFT_S3_* variables: s3_settings.py).
    store: str | None = None
    #: A second port, on ``host``, for connections through a load balancer: each must
    #: start with a PROXY v2 header (docs/SCALING.md); None: no such port.
    proxy_port: int | None = None


def read_port_info(path: Path) -> int:
    """The port in ``port.info``; a warning and 1256 when it is missing or invalid."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        warnings.warn(f"{path} not found; using port {DEFAULT_PORT}", PortInfoWarning, stacklevel=2)
        return DEFAULT_PORT
    except (OSError, UnicodeDecodeError) as exc:
        warnings.warn(
            f"{path} unreadable ({exc}); using port {DEFAULT_PORT}", PortInfoWarning, stacklevel=2
        )
        return DEFAULT_PORT
    if text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    warnings.warn(
        f"{path} holds {text[:40]!r}, not a port from 1 to 65535; using port {DEFAULT_PORT}",
        PortInfoWarning,
        stacklevel=2,
    )
    return DEFAULT_PORT


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return int(text)


def _descriptor(text: str) -> int:
    if not text.isdigit() or int(text) < 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not an inherited descriptor (3 or more)")
    return int(text)


def _store(text: str) -> str:
    if not text:
        return text  # EFT_STORE= : the data directory, as without it
    try:
        parse_store_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _legacy(text: str) -> str:
    if text not in ("allow", "deny"):
        raise argparse.ArgumentTypeError(f"{text!r} is not allow or deny")
    return text


def _when_full(text: str) -> str:
    if text not in ("shed", "refuse"):
        raise argparse.ArgumentTypeError(f"{text!r} is not shed or refuse")
    return text


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _cookie_threshold(text: str) -> int:
    if text == "off":
        return -1
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0: always) or off")
    return int(text)


def _bytes(text: str) -> int:
    """A number of bytes, 0 allowed."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes")
    return int(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eft-server",
        description="Receive encrypted files from eft clients (protocol versions 3 and 4).",
        epilog="Each flag has an EFT_* variable (e.g. EFT_PORT, EFT_DATA_DIR); flags win. "
        "Without --port or EFT_PORT the port comes from port.info in the working "
        "directory, else 1256.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--host", help="address to listen on (EFT_HOST; default 0.0.0.0)")
    parser.add_argument("--port", type=_port, help="TCP port, 0 for any free one (EFT_PORT)")
    parser.add_argument(
        "--listen-fd",
        type=_descriptor,
        help="serve on this inherited listening socket instead of --host/--port (EFT_LISTEN_FD)",
    )
    parser.add_argument(
        "--proxy-port",
        type=_port,
        help="also listen here, on --host, for connections from HAProxy (send-proxy-v2): "
        "each must start with a PROXY v2 header, and a LOCAL one (a health check) is "
        "answered EFT-OK (EFT_PROXY_PORT; docs/SCALING.md)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="where files are kept (EFT_DATA_DIR; default ./data)"
    )
    parser.add_argument(
        "--store",
        type=_store,
        metavar="s3://BUCKET/PREFIX",
        help="keep files in S3 instead of the data directory (EFT_STORE); endpoint and "
        "credentials from EFT_S3_ENDPOINT, EFT_S3_REGION, EFT_S3_ACCESS_KEY_ID, "
        "EFT_S3_SECRET_ACCESS_KEY (or *_FILE), docs/STORAGE-S3.md",
    )
    parser.add_argument("--log-format", choices=LOG_FORMATS, help="EFT_LOG_FORMAT; default auto")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="EFT_LOG_LEVEL"
    )
    parser.add_argument(
        "--answer-901",
        action="store_true",
        default=None,
        help="answer 901 with 1604, for clients that wait for it (EFT_ANSWER_901=1)",
    )
    parser.add_argument(
        "--metrics-port", type=_port, help="serve Prometheus metrics here (EFT_METRICS_PORT)"
    )
    parser.add_argument(
        "--metrics-host", help="address for the metrics endpoint (EFT_METRICS_HOST)"
    )
    parser.add_argument(
        "--idle-timeout", type=_positive, help="seconds (EFT_IDLE_TIMEOUT; default 120)"
    )
    parser.add_argument(
        "--shutdown-grace", type=_positive, help="seconds (EFT_SHUTDOWN_GRACE; default 10)"
    )
    parser.add_argument(
        "--ephemeral",
        action="store_true",
        default=None,
        help="keep clients and files in memory only, as the original design (EFT_EPHEMERAL=1)",
    )
    parser.add_argument(
        "--registry",
        metavar="URL",
        help="postgresql://host[:port]/dbname: a registry shared by several servers "
        "(EFT_REGISTRY; user and password from EFT_PG_USER, EFT_PG_PASSWORD_FILE; "
        "default: SQLite in the data directory)",
    )
    parser.add_argument(
        "--registry-cache",
        type=_count,
        help="registry lookups kept in memory, an LRU cache (EFT_REGISTRY_CACHE; default 10000)",
    )
    limits = parser.add_argument_group("limits (each also an EFT_* variable)")
    limits.add_argument("--max-connections", type=_count, help="default 1000")
    limits.add_argument(
        "--when-full",
        choices=("shed", "refuse"),
        help="at --max-connections, close the oldest unauthenticated connection (shed, "
        "the default) or refuse the newcomer (refuse)",
    )
    limits.add_argument(
        "--max-handshakes-per-address",
        type=_count,
        metavar="N",
        help="unauthenticated connections from one source address at once; default no limit",
    )
    limits.add_argument(
        "--handshake-rate-per-address",
        type=_count,
        metavar="N",
        help="v4 handshakes answered per second per source address; default no limit",
    )
    limits.add_argument(
        "--cookies-above",
        type=_cookie_threshold,
        metavar="N|off",
        help="v4 handshakes per second, server-wide, above which message 1 needs a cookie "
        "(and for 5 s after; 0: always, off: never); default 256",
    )
    limits.add_argument("--read-timeout", type=_positive, help="seconds inside a frame; default 30")
    limits.add_argument(
        "--handshake-timeout", type=_positive, help="seconds to get a key; default 30"
    )
    limits.add_argument("--max-sessions-per-client", type=_count, help="default 4")
    limits.add_argument("--max-file-size", type=_count, help="bytes; default 4 GiB - 17")
    limits.add_argument(
        "--max-packet-payload", type=_count, help="bytes per 828; default 4 GiB - 1"
    )
    limits.add_argument("--orphan-timeout", type=_positive, help="seconds; default 3600")
    limits.add_argument("--max-file-size-v4", type=_count, help="bytes; default 1 TiB")
    limits.add_argument(
        "--record-buffers",
        type=_count,
        help="version-4 records received at once, server-wide (1 MiB each); default 32",
    )
    limits.add_argument(
        "--record-buffers-per-client",
        type=_count,
        help="record buffers one identity holds at once; default 4",
    )
    limits.add_argument(
        "--record-min-rate",
        type=_count,
        help="bytes/s a record buffer's holder must keep while others wait for one; default 65536",
    )
    limits.add_argument(
        "--resume-ttl", type=_positive, help="seconds a broken v4 upload is kept; default 86400"
    )
    limits.add_argument(
        "--max-partial-uploads-per-client",
        type=_count,
        help="unfinished v4 uploads kept per client, the oldest dropped first; default 16",
    )
    limits.add_argument(
        "--max-partial-bytes-per-client",
        type=_count,
        help="bytes of unfinished v4 uploads kept per client; default 16 GiB",
    )
    limits.add_argument(
        "--max-partial-uploads",
        type=_count,
        help="unfinished v4 uploads kept, server-wide; default 4096",
    )
    limits.add_argument(
        "--max-partial-bytes",
        type=_count,
        help="bytes of unfinished v4 uploads kept, server-wide; default 256 GiB",
    )
    limits.add_argument(
        "--keep-free",
        type=_bytes,
        help="bytes left free on the v4 files' disk; larger files are refused before "
        "their data; default 256 MiB",
    )
    limits.add_argument(
        "--sweep-interval",
        type=_positive,
        help="seconds between sweeps for leftovers; default min(orphan/2, ttl/2, 300)",
    )
    parser.add_argument(
        "--legacy",
        choices=("allow", "deny"),
        help="accept version-3 clients on the same port (EFT_LEGACY; default allow)",
    )
    policy = parser.add_argument_group(
        "registration policy (docs/OPERATIONS.md)",
        "EFT_REGISTRATION, EFT_REGISTER_ALLOW (comma-separated), EFT_REGISTER_ALLOW_FILE, "
        "EFT_REGISTER_RATE, EFT_REGISTER_RATE_PER_ADDRESS",
    )
    policy.add_argument(
        "--registration",
        choices=REGISTRATION_MODES,
        help="who may register a new name: open, allowlist (patterns, and invitation tokens "
        "for other names), token (invitation tokens only: eft-admin token create), closed; "
        "default open (allowlist when patterns are given)",
    )
    policy.add_argument(
        "--register-allow",
        action="append",
        metavar="PATTERN",
        help="a name or glob pattern (fnmatch) that may register; repeatable",
    )
    policy.add_argument(
        "--register-allow-file",
        type=Path,
        metavar="FILE",
        help="patterns, one a line (# starts a comment)",
    )
    policy.add_argument(
        "--register-rate", type=_count, metavar="N", help="new names per minute, server-wide"
    )
    policy.add_argument(
        "--register-rate-per-address",
        type=_count,
        metavar="N",
        help="new names per minute from one address",
    )
    return parser


REGISTRATION_MODES = ("open", "allowlist", "token", "closed")


def _patterns_file(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def _registration(
    parser: argparse.ArgumentParser,
    mode: object,
    flags: list[str] | None,
    env_patterns: str | None,
    file: object,
) -> tuple[str, tuple[str, ...]]:
    """The mode and its patterns; the mode is allowlist when only patterns are given."""
    patterns = list(flags) if flags else []
    if not flags and env_patterns:
        patterns = [p.strip() for p in env_patterns.split(",") if p.strip()]
    if file is not None:
        try:
            patterns += _patterns_file(Path(str(file)))
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"--register-allow-file: cannot read {file}: {exc}")
    if mode is None:
        mode = "allowlist" if patterns else "open"
    if mode not in REGISTRATION_MODES:
        parser.error(f"EFT_REGISTRATION must be one of {', '.join(REGISTRATION_MODES)}")
    if mode == "allowlist" and not patterns:
        parser.error("--registration allowlist needs --register-allow or --register-allow-file")
    if mode != "allowlist" and patterns:
        parser.error(f"--register-allow is for --registration allowlist, not {mode}")
    return str(mode), tuple(patterns)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def load_config(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ServerConfig:
    """Settings from all sources; ``argparse`` exits with a message on bad flags."""
    parser = build_parser()
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()

    def pick(flag: object, name: str, convert: object = str) -> object:
        if flag is not None:
            return flag
        raw = env.get(f"EFT_{name}")
        if raw is None:
            return None
        try:
            return convert(raw)  # type: ignore[operator]
        except (argparse.ArgumentTypeError, ValueError) as exc:
            parser.error(f"EFT_{name}: {exc}")

    def flag_bool(raw: str) -> bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not a yes/no value")

    values: dict[str, object] = {
        "host": pick(args.host, "HOST"),
        "port": pick(args.port, "PORT", _port),
        "data_dir": pick(args.data_dir, "DATA_DIR", Path),
        "log_format": pick(args.log_format, "LOG_FORMAT"),
        "log_level": pick(args.log_level, "LOG_LEVEL"),
        "answer_crc_retry": pick(args.answer_901, "ANSWER_901", flag_bool),
        "metrics_port": pick(args.metrics_port, "METRICS_PORT", _port),
        "metrics_host": pick(args.metrics_host, "METRICS_HOST"),
        "idle_timeout": pick(args.idle_timeout, "IDLE_TIMEOUT", _positive),
        "shutdown_grace": pick(args.shutdown_grace, "SHUTDOWN_GRACE", _positive),
        "ephemeral": pick(args.ephemeral, "EPHEMERAL", flag_bool),
        "registry_cache": pick(args.registry_cache, "REGISTRY_CACHE", _count),
        "registry": pick(args.registry, "REGISTRY"),
        "max_connections": pick(args.max_connections, "MAX_CONNECTIONS", _count),
        "when_full": pick(args.when_full, "WHEN_FULL", _when_full),
        "read_timeout": pick(args.read_timeout, "READ_TIMEOUT", _positive),
        "handshake_timeout": pick(args.handshake_timeout, "HANDSHAKE_TIMEOUT", _positive),
        "max_sessions_per_client": pick(
            args.max_sessions_per_client, "MAX_SESSIONS_PER_CLIENT", _count
        ),
        "max_file_size": pick(args.max_file_size, "MAX_FILE_SIZE", _count),
        "max_packet_payload": pick(args.max_packet_payload, "MAX_PACKET_PAYLOAD", _count),
        "orphan_timeout": pick(args.orphan_timeout, "ORPHAN_TIMEOUT", _positive),
        "max_file_size_v4": pick(args.max_file_size_v4, "MAX_FILE_SIZE_V4", _count),
        "record_buffers": pick(args.record_buffers, "RECORD_BUFFERS", _count),
        "record_buffers_per_client": pick(
            args.record_buffers_per_client, "RECORD_BUFFERS_PER_CLIENT", _count
        ),
        "record_min_rate": pick(args.record_min_rate, "RECORD_MIN_RATE", _count),
        "resume_ttl": pick(args.resume_ttl, "RESUME_TTL", _positive),
        "sweep_interval": pick(args.sweep_interval, "SWEEP_INTERVAL", _positive),
        "max_partial_uploads_per_client": pick(
            args.max_partial_uploads_per_client, "MAX_PARTIAL_UPLOADS_PER_CLIENT", _count
        ),
        "max_partial_bytes_per_client": pick(
            args.max_partial_bytes_per_client, "MAX_PARTIAL_BYTES_PER_CLIENT", _count
        ),
        "max_partial_uploads": pick(args.max_partial_uploads, "MAX_PARTIAL_UPLOADS", _count),
        "max_partial_bytes": pick(args.max_partial_bytes, "MAX_PARTIAL_BYTES", _count),
        "keep_free": pick(args.keep_free, "KEEP_FREE", _bytes),
        "legacy": pick(args.legacy, "LEGACY", _legacy),
        "listen_fd": pick(args.listen_fd, "LISTEN_FD", _descriptor),
        "store": pick(args.store, "STORE", _store),
        "proxy_port": pick(args.proxy_port, "PROXY_PORT", _port),
    }
    values["registration"], values["register_allow"] = _registration(
        parser,
        pick(args.registration, "REGISTRATION"),
        args.register_allow,
        env.get("EFT_REGISTER_ALLOW"),
        pick(args.register_allow_file, "REGISTER_ALLOW_FILE", Path),
    )
    values["register_rate"] = pick(args.register_rate, "REGISTER_RATE", _count)
    values["register_rate_per_address"] = pick(
        args.register_rate_per_address, "REGISTER_RATE_PER_ADDRESS", _count
    )
    values["max_handshakes_per_address"] = pick(
        args.max_handshakes_per_address, "MAX_HANDSHAKES_PER_ADDRESS", _count
    )
    values["handshake_rate_per_address"] = pick(
        args.handshake_rate_per_address, "HANDSHAKE_RATE_PER_ADDRESS", _count
    )
    values["cookies_above"] = pick(args.cookies_above, "COOKIES_ABOVE", _cookie_threshold)
    if values["log_format"] is not None and values["log_format"] not in LOG_FORMATS:
        parser.error(f"EFT_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    if values["port"] is None and values["listen_fd"] is None:
        values["port"] = read_port_info(cwd / PORT_FILE)
    return ServerConfig(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]


def registration_rules(config: ServerConfig) -> RegistrationRules:
    return RegistrationRules(
        config.registration,
        config.register_allow,
        config.register_rate,
        config.register_rate_per_address,
    )
