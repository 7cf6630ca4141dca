"""``eft-check``: conformance checks of another implementation of protocol version 3."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

from eft_protocol import __version__

from .report import Report, print_json, print_table
from .rules import CLIENT_CHECKS, SERVER_CHECKS
from .server_checks import ServerChecker, parse_address


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eft-check",
        description="Check a version-3 server or client against docs/PROTOCOL-v3.md. "
        "Exit code 0 only when every check passes; 1 when some do not; 2 usage; "
        "3 the server cannot be reached.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    parser.add_argument(
        "--only", action="append", metavar="CHECK", help="run this check only (repeatable)"
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the peer (default 5)"
    )
    parser.add_argument(
        "--no-frames", action="store_true", help="leave the hex frames out of the table"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="check a server: eft-check server HOST:PORT")
    server.add_argument("address", metavar="HOST:PORT")
    client = commands.add_parser(
        "client",
        help="check a client: eft-check client -- COMMAND [ARGS]",
        description="Runs COMMAND once per scenario in a fresh working directory holding "
        "transfer.info (line 1 127.0.0.1:PORT of our scripted server, line 2 a user name, "
        "line 3 the file to send, in that directory). Placeholders in ARGS are replaced: "
        "{server} (HOST:PORT), {host}, {port}, {name}, {file} (absolute path), {dir}.",
    )
    client.add_argument(
        "--patience",
        type=float,
        default=3.0,
        help="seconds of client silence that count as waiting for an answer (default 3)",
    )
    client.add_argument(
        "--slow", type=float, default=1.5, help="delay of each answer in slow-server (s)"
    )
    client.add_argument("client_command", nargs=argparse.REMAINDER, metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    only = set(args.only) if args.only else None
    known = SERVER_CHECKS if args.command == "server" else CLIENT_CHECKS
    if only and not only <= set(known):
        unknown = ", ".join(sorted(only - set(known)))
        print(
            f"eft-check: no {args.command} check {unknown}; see docs/CONFORMANCE.md",
            file=sys.stderr,
        )
        return 2
    report: Report
    if args.command == "server":
        try:
            address = parse_address(args.address)
        except ValueError as exc:
            print(f"eft-check: {exc}", file=sys.stderr)
            return 2
        try:  # one connection first: 24 checks failing to connect would say less
            socket.create_connection(address, timeout=args.timeout).close()
        except OSError as exc:
            print(f"eft-check: cannot connect to {args.address}: {exc}", file=sys.stderr)
            return 3
        report = ServerChecker(address, timeout=args.timeout).run(only)
    else:
        from .client_checks import ClientChecker  # noqa: PLC0415 - server mode needs none of it

        command = [part for part in args.client_command if part != "--"]
        if not command:
            print("eft-check: give the client's command after --", file=sys.stderr)
            return 2
        checker = ClientChecker(
            command, timeout=args.timeout, patience=args.patience, slow=args.slow
        )
        report = checker.run(only)
    if args.json:
        print_json(report)
    else:
        print_table(report, frames=not args.no_frames)
    return 0 if report.conforms else 1


if __name__ == "__main__":
    sys.exit(main())
