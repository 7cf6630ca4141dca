"""``eft-admin``: the operator's command, on a running server's data or offline.

With a server holding the data directory, each action goes through its control socket
(the server's registry cache and revocations must see it); without one, ``eft-admin``
takes the data directory's lock and opens the registry itself. docs/OPERATIONS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from eft_protocol import __version__
from eft_server.control import (
    ACTIONS,
    CHANGES,
    AdminError,
    Administration,
    read_fingerprint,
    request,
)
from eft_server.data_lock import DataDirLock, DataDirLocked
from eft_server.log import configure_logging
from eft_server.registration_policy import (
    REVOKED_FILE,
    GatedRegistry,
    RegistrationPolicy,
    RegistrationRules,
    Revocations,
)
from eft_server.sqlite_registry import DATABASE_FILE, SqliteRegistry
from eft_server.tokens import TOKENS_FILE, TokenStore

from .output import render

#: Exit codes (the README's table): 1 is a bug, 2 a bad flag (argparse).
EXIT_CODES = {
    "bad_request": 2,
    "no_data_dir": 3,
    "shared_registry": 3,  # no registry here to open: it is in PostgreSQL
    "unknown_client": 4,
    "unknown_file": 5,
    "ambiguous": 6,
    "has_files": 7,
    "export_target": 7,
    "unknown_token": 4,
    "rotation": 7,  # a next key exists already, or none to retire
    "server_unreachable": 8,
    "forbidden": 8,
    "no_server_key": 9,
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="JSON on stdout")
    parser = argparse.ArgumentParser(
        prog="eft-admin",
        description="Administer an eft server's clients and files, running or not.",
        epilog="Exit codes: 0 done, 2 usage, 3 no data directory, 4 unknown client or token, "
        "5 unknown file, 6 ambiguous name, 7 refused (files left, export target not "
        "empty, no next key to retire or one already made), 8 the server holding the "
        "directory cannot be reached, 9 no server key.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--data-dir", type=Path, help="the server's data directory (EFT_DATA_DIR; default ./data)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for a running server"
    )
    commands = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")
    commands.add_parser("list-clients", parents=[common], help="clients of both versions")
    commands.add_parser("list-files", parents=[common], help="stored files")
    revoke = commands.add_parser(
        "revoke", parents=[common], help="the client can no longer log in (name stays taken)"
    )
    revoke.add_argument("client", metavar="CLIENT", help="client id (32 hex digits) or name")
    free = commands.add_parser(
        "free-name", parents=[common], help="forget a client: its name is free"
    )
    free.add_argument("name", metavar="NAME")
    free.add_argument("--remove-files", action="store_true", help="its stored files too")
    free.add_argument("--version", dest="protocol", type=int, choices=(3, 4))
    remove = commands.add_parser("remove-file", parents=[common], help="delete a stored file")
    remove.add_argument("client", metavar="CLIENT")
    remove.add_argument("file", metavar="NAME")
    commands.add_parser(
        "show-key", parents=[common], help="the version-4 key's fingerprint (and the next one's)"
    )
    rotate = commands.add_parser(
        "rotate-key",
        parents=[common],
        help="make the next version-4 key, announced to clients until --retire",
    )
    rotate.add_argument(
        "--retire",
        action="store_true",
        help="after the grace period: the next key becomes the current one (the old one "
        "is kept aside as server.key.retired-<UTC time>)",
    )
    token = commands.add_parser(
        "token", help="invitation tokens: create, list, revoke (docs/OPERATIONS.md)"
    )
    tokens = token.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    create = tokens.add_parser(
        "create", parents=[common], help="a new token, printed once (only its hash is kept)"
    )
    create.add_argument("--uses", type=int, default=1, help="registrations it admits (1)")
    create.add_argument(
        "--expires", metavar="DURATION", help="it admits nobody after this: 30m, 12h, 7d, 2w"
    )
    create.add_argument(
        "--name-pattern", metavar="P", help="only names matching this glob (fnmatch)"
    )
    tokens.add_parser("list", parents=[common], help="every token: id, state, uses")
    revoke_token = tokens.add_parser("revoke", parents=[common], help="it admits nobody now")
    revoke_token.add_argument("id", metavar="ID", help="the id token list shows")
    export = commands.add_parser(
        "export", parents=[common], help="the registry as JSON and a copy of every file"
    )
    export.add_argument("directory", metavar="DIR", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "rotate-key" and args.retire:
        args.action = "retire-key"  # its own action: logged and counted apart
    if args.action == "token":
        args.action = f"token-{args.token_action}"
    configure_logging("json", "info", sys.stderr)  # stdout is the answer's
    log: Any = structlog.get_logger("eft.admin")
    data_dir = args.data_dir or Path(os.environ.get("EFT_DATA_DIR", "data"))
    try:
        result, where = run(data_dir, args.action, _arguments(args), args.timeout)
    except AdminError as error:
        code = EXIT_CODES.get(error.kind, 1)
        log.error("admin_action", action=args.action, ok=False, error=error.kind, exit_code=code)
        print(f"eft-admin: {error}", file=sys.stderr)
        return code
    if where == "offline":  # the server logs and counts what it carries out
        log.info("admin_action", action=args.action, ok=True, where=where, **_arguments(args))
    print(render(args.action, result, as_json=args.json))
    return 0


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    if args.action in ("revoke", "remove-file"):
        values = {"client": args.client}
        if args.action == "remove-file":
            values["file"] = args.file
        return values
    if args.action == "free-name":
        return {"name": args.name, "remove_files": args.remove_files, "version": args.protocol}
    if args.action == "export":
        return {"directory": str(args.directory.resolve())}
    if args.action == "token-create":
        return {"uses": args.uses, "expires": args.expires, "name_pattern": args.name_pattern}
    if args.action == "token-revoke":
        return {"id": args.id}
    return {}


def run(
    data_dir: Path, action: str, arguments: dict[str, Any], timeout: float
) -> tuple[dict[str, Any], str]:
    """The action's result, and where it ran ("server" or "offline")."""
    assert action in ACTIONS
    if not data_dir.is_dir():
        raise AdminError("no_data_dir", f"{data_dir} is not a directory (give --data-dir)")
    try:
        lock = DataDirLock(data_dir)
    except DataDirLocked:
        return _through_server(data_dir, action, arguments, timeout), "server"
    try:
        return _offline(data_dir, action, arguments), "offline"
    finally:
        lock.release()


def _through_server(
    data_dir: Path, action: str, arguments: dict[str, Any], timeout: float
) -> dict[str, Any]:
    try:
        answer = request(data_dir, action, arguments, timeout)
    except (OSError, ValueError) as exc:
        raise AdminError(
            "server_unreachable",
            f"a server holds {data_dir} but its control socket does not answer ({exc}); "
            "is it still starting, or an older eft-server?",
        ) from None
    if not answer.get("ok"):
        raise AdminError(str(answer.get("error")), str(answer.get("message")))
    result: dict[str, Any] = answer["result"]
    return result


def _offline(data_dir: Path, action: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if os.environ.get("EFT_REGISTRY"):
        # Offline, eft-admin opens the SQLite file; a shared registry is changed through
        # a server (its control socket), which keeps the replicas' rules in one place.
        raise AdminError(
            "shared_registry",
            "EFT_REGISTRY names a PostgreSQL registry: eft-admin changes it only through a "
            f"running server on {data_dir} (start one), not offline",
        )
    if not (data_dir / DATABASE_FILE).is_file():
        raise AdminError(
            "no_data_dir",
            f"{data_dir} holds no registry ({DATABASE_FILE}): not a data directory "
            "(or its server uses a PostgreSQL registry: run eft-admin while it runs)",
        )
    engine = SqliteRegistry(data_dir / DATABASE_FILE, cache_entries=0)
    try:
        registry = GatedRegistry(
            engine,
            RegistrationPolicy(RegistrationRules(), TokenStore(data_dir / TOKENS_FILE)),
            Revocations(data_dir / REVOKED_FILE),
        )
        administration = Administration(registry, data_dir, read_fingerprint(data_dir))
        result = administration.perform(action, arguments)
        if action in CHANGES:
            pending = registry.flush()
            if pending is not None:
                pending.result()
        return result
    finally:
        engine.close()
