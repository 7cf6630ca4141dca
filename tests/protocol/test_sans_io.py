"""The protocol core does no I/O: no clock, no environment, no socket, no event loop.

Read from the source (every module of ``eft_protocol``), and checked again at run time:
the whole package imported afresh in a process where reading the clock, the
environment, a socket or an event loop raises.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import eft_protocol

PACKAGE = Path(eft_protocol.__file__).parent
#: Modules the core may not import at all.
FORBIDDEN_MODULES = {"socket", "asyncio", "time", "selectors", "threading", "datetime"}
#: Attributes of ``os`` that read the outside world.
FORBIDDEN_OS = {"environ", "getenv", "environb", "getenvb"}


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module.split(".")[0]]
            if names == ["os"]:
                names += [f"os.{a.name}" for a in node.names if a.name in FORBIDDEN_OS]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [f"os.{node.attr}"] if node.value.id == "os" else []
            names = [n for n in names if n.removeprefix("os.") in FORBIDDEN_OS]
        else:
            continue
        found += [
            f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}"
            for name in names
            if name in FORBIDDEN_MODULES or name.startswith("os.")
        ]
    return found


def test_no_module_of_the_core_reaches_for_clock_environment_socket_or_loop() -> None:
    assert _sources(), PACKAGE
    offences = [offence for path in _sources() for offence in _offences(path)]
    assert offences == []


TRAPPED_IMPORT = """
import os, socket, sys, time, asyncio, importlib, pkgutil

CORE = sys.argv[1]

def from_core():
    # The first caller outside the standard library's plumbing (os, mapping mixins).
    frame = sys._getframe(2)
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen") or frame.f_code.co_filename == os.__file__
    ):
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(CORE)

def trap(what, original):
    def guarded(*args, **kwargs):
        if from_core():  # a library may read its own settings; the core may not
            raise AssertionError(f"the core touched {what}")
        return original(*args, **kwargs)
    return guarded

class Environ(type(os.environ)):
    def __getitem__(self, key):
        if from_core():
            raise AssertionError(f"the core read the environment: {key}")
        return super().__getitem__(key)

for name in ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns"):
    setattr(time, name, trap(f"time.{name}", getattr(time, name)))
for module, name in ((socket, "socket"), (socket, "create_connection"),
                     (asyncio, "get_event_loop"), (asyncio, "get_running_loop"),
                     (asyncio, "new_event_loop"), (os, "getenv")):
    setattr(module, name, trap(f"{module.__name__}.{name}", getattr(module, name)))
environ = os.environ
environ.__class__ = Environ

import eft_protocol
for module in pkgutil.walk_packages(eft_protocol.__path__, "eft_protocol."):
    importlib.import_module(module.name)
print("clean")
"""


def test_importing_every_module_touches_none_of_them() -> None:
    done = subprocess.run(
        [sys.executable, "-c", TRAPPED_IMPORT, str(PACKAGE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "clean", done.stderr
