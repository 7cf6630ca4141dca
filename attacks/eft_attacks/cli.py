"""``eft-attack NAME [options]``: run one attack on a version-3 server (or a recording);
``--protocol 4`` makes the same attack's version-4 attempt.

Exit status: 0 the attack succeeded, 1 it failed (the target resisted), 2 usage error,
3 the attack could not be carried out (target unreachable, bad recording, timeout).
``eft-attack --list`` lists the attacks with the finding of docs/SECURITY.md each proves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from eft_protocol import __version__

from .common import AttackError, Out

#: name -> module. Each module has FINDING, SUMMARY, add_arguments(parser), run(args, out).
ATTACKS: dict[str, str] = {
    "record": "record",
    "sniff": "sniff",
    "mitm-key": "mitm_key",
    "spoof-id": "spoof_id",
    "claim-key": "claim_key",
    "reconnect-dos": "reconnect_dos",
    "blind-overwrite": "blind_overwrite",
    "padding-oracle": "padding_oracle",
    "bitflip": "bitflip",
    "crc-recover": "crc_recover",
    "replay": "replay",
    "zero-iv": "zero_iv",
    "rsa-weak": "rsa_weak",
    "decrypt-recording": "decrypt_recording",
    "enumerate-names": "enumerate_names",
    "path-traversal": "path_traversal",
    "flood": "flood",
    "slow": "slow",
    "hello-flood": "hello_flood",
    "oversize": "oversize",
    "downgrade": "downgrade",
    "forged-denial": "forged_denial",
    "impostor": "impostor",
    "hostile-server": "hostile_server",
    "log-secrets": "log_secrets",
}

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3


def load(name: str) -> ModuleType:
    return importlib.import_module(f"eft_attacks.{ATTACKS[name]}")


def _list() -> int:
    try:
        for name in ATTACKS:
            module = load(name)
            print(f"{name:<18} {module.FINDING:<7} {module.SUMMARY}", flush=True)
    except BrokenPipeError:  # eft-attack --list | head
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more will be written
    return EXIT_SUCCEEDED


def build_parser(name: str, module: ModuleType) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"eft-attack {name}",
        description=f"{module.FINDING}: {module.SUMMARY}",
        epilog=(module.__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="give up after this many seconds (60)"
    )
    module.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.replace("``", ""))  # the docstring is reStructuredText
        print("attacks:")
        _list()
        return EXIT_SUCCEEDED if argv else EXIT_USAGE
    if argv[0] == "--list":
        return _list()
    if argv[0] == "--version":
        print(f"eft-attack {__version__}")
        return EXIT_SUCCEEDED
    name = argv[0]
    if name not in ATTACKS:
        print(f"eft-attack: unknown attack {name!r}; see eft-attack --list", file=sys.stderr)
        return EXIT_USAGE
    module = load(name)
    parser = build_parser(name, module)
    args = parser.parse_args(argv[1:])
    out = Out(json_mode=args.json)
    try:
        success = asyncio.run(asyncio.wait_for(module.run(args, out), args.timeout + 5))
    except AttackError as exc:
        out.event("error", "the attack could not be carried out", error=str(exc))
        return EXIT_ERROR
    except TimeoutError:
        out.event("error", f"the attack did not finish in {args.timeout:g} s")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return EXIT_SUCCEEDED if success else EXIT_FAILED


def entry() -> None:  # pragma: no cover - for python -m
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
