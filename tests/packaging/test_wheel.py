"""What a user installs is what works: the sdist, the wheel built from it, and the wheel
installed non-editable, without extras, into a fresh virtual environment, then used
through its commands from a directory outside the checkout.

The rest of the suite runs against the checkout (an editable install); this is the one
place that would notice a module, a dependency or an entry point missing from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from eft_lab.processes import read_json_lines, wait_for_listening
from eft_protocol import __version__

ROOT = Path(__file__).resolve().parents[2]
#: Where the import packages live in the checkout (pyproject.toml's packages.find).
SOURCE_FOLDERS = ("protocol", "server", "client", "lab", "attacks", "check")
COMMANDS = (
    "eft-server",
    "eft-client",
    "eft-lab",
    "eft-proxy",
    "eft-lab-client",
    "eft-attack",
    "eft-check",
    "eft-admin",
)


@dataclass
class Installed:
    wheel: Path
    sdist: Path
    bin: Path
    home: Path  # a working directory outside the checkout

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EFT_", "PYTHON"))}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / command[0]), *command[1:]],
            cwd=self.home,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _tracked(*patterns: str) -> list[str]:
    done = subprocess.run(
        ["git", "ls-files", "--", *patterns], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def _checkout_modules() -> set[str]:
    # protocol/eft_protocol/v4/server.py -> eft_protocol/v4/server.py
    tracked = _tracked(*(f"{folder}/*.py" for folder in SOURCE_FOLDERS))
    return {path.split("/", 1)[1] for path in tracked}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    dist = tmp_path_factory.mktemp("dist")
    # From a copy of the files git tracks, as a release is made from a clean clone: the
    # checkout's own build leftovers (eft.egg-info lists every file the editable install
    # saw) would otherwise fill in for what the packaging leaves out.
    source = tmp_path_factory.mktemp("source")
    for relative in _tracked():
        if (ROOT / relative).is_file():
            (source / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, source / relative)
    # The sdist first, then the wheel built from the sdist: a file the sdist leaves out
    # is then missing from the wheel too, and fails below.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True,
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    done = subprocess.run(
        [*pip, "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    home = tmp_path_factory.mktemp("home")
    return Installed(wheel, sdist, venv / "bin", home)


def test_the_wheel_holds_every_module_of_the_checkout(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        in_wheel = {name for name in wheel.namelist() if name.endswith(".py")}
        names = wheel.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        headers = wheel.read(metadata).decode()
        (license_file,) = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
        license_text = wheel.read(license_file).decode()
    assert _checkout_modules() - in_wheel == set()
    assert "eft_protocol/py.typed" in names
    # The license the metadata declares is the one shipped, and the checkout's.
    assert "License-Expression: MIT" in headers.splitlines()
    assert license_text == (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License")
    assert f"Version: {__version__}" in headers.splitlines()


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    done = installed.run(
        "python", "-c", "import eft_protocol, eft_server; print(eft_server.__file__)"
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.bin.parent)
    # No development tool came with it: the runtime dependencies only.
    done = installed.run("python", "-c", "import pytest")
    assert done.returncode != 0


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_runs_and_says_its_version(installed: Installed, command: str) -> None:
    done = installed.run(command, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{command} {__version__}"
    assert installed.run(command, "--help").returncode == 0


def test_the_attack_toolkit_lists_its_attacks(installed: Installed) -> None:
    done = installed.run("eft-attack", "--list")
    assert done.returncode == 0, done.stderr
    assert "EFT-01" in done.stdout


def test_real_transfers_of_both_versions_through_the_installed_commands(
    installed: Installed,
) -> None:
    data = installed.home / "data"
    log = installed.home / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(installed.bin / "eft-server"), "--host", "127.0.0.1", "--port", "0"],
            cwd=installed.home,
            env={**installed.env(), "EFT_DATA_DIR": str(data), "EFT_LOG_FORMAT": "json"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        port = wait_for_listening(server, log, "installed eft-server")["port"]
        for protocol in (3, 4):
            source = installed.home / f"note-v{protocol}.bin"
            source.write_bytes(os.urandom(300_000 + protocol))
            config = installed.home / f"client-v{protocol}"
            done = installed.run(
                "eft-client",
                "--server", f"127.0.0.1:{port}",
                "--name", f"wheel-v{protocol}",
                "--config-dir", str(config),
                "--protocol", str(protocol),
                "--json",
                str(source),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            events = [json.loads(line) for line in done.stdout.splitlines()]
            assert events[-1]["event"] == "done", events[-1]
            stored = [p for p in data.rglob(source.name) if p.is_file()]
            assert [p.read_bytes() for p in stored] == [source.read_bytes()]
    finally:
        server.terminate()
        assert server.wait(30) == 0
    records = read_json_lines(log)
    outcomes = [r["outcome"] for r in records if r.get("event") == "transfer"]
    assert outcomes.count("verified") >= 1, outcomes  # version 3's file
    # Version 4 streams a file of one record: its connection's one line counts it.
    streamed = [(r["files"], r["bytes"]) for r in records if r.get("event") == "files_streamed"]
    assert streamed == [(1, 300_004)], streamed
