"""Running the Windows build of the C++ client (client/cpp/windows/build.sh) under Wine.

The .exe runs as a Windows program would: Wine maps drive Z: to the Linux root, so a test
can hand it a path with a drive letter and backslashes, and its UTF-16 command line comes
from Wine decoding our UTF-8 arguments (LC_ALL=C.UTF-8). One Wine prefix is initialised
once and cached (``wine_prefix``); a wineserver that outlives each run keeps start-up short.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.cpp.helpers import CLIENT_TIMEOUT, REPO, Run

EXE = REPO / "client" / "cpp" / "build-windows" / "eft-client-cpp.exe"
BUILD_COMMAND = "make cpp-windows (client/cpp/windows/build.sh)"
MINGW_OBJDUMP = "x86_64-w64-mingw32-objdump"
# What Windows itself provides: a self-contained .exe imports nothing else.
SYSTEM_DLLS = {"KERNEL32.dll", "WS2_32.dll", "ADVAPI32.dll", "msvcrt.dll"}
# The wineserver stays this long after the last Windows process of a run has exited, so
# the next run need not start it again (a cold start takes seconds); then it goes alone.
WINESERVER_LINGER_SECONDS = 30


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def windows_path(path: Path) -> str:
    """The same file as Windows programs under Wine see it: drive Z: is the Linux root."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


@dataclass(frozen=True)
class Wine:
    """A Wine installation with an initialised prefix: runs the client's .exe."""

    wine: str
    prefix: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}  # no window, ever
        env.pop("XDG_CONFIG_HOME", None)  # a Linux path: see env_for
        env.update(
            WINEPREFIX=str(self.prefix),
            WINEDEBUG="-all",
            # No Mono or Gecko: a console program needs neither, and Wine would look for them.
            WINEDLLOVERRIDES="mscoree,mshtml=d",
            # Wine decodes the Linux arguments (our UTF-8) with the locale's encoding.
            LC_ALL="C.UTF-8",
        )
        return env

    def env_for(self, cwd: Path, config_home: Path | None = None) -> dict[str, str]:
        """The client's per-user directory (docs/IDENTITY.md) in the test's own folder,
        ``cwd/.config-home`` unless given, as a Windows path; never the Wine prefix's
        %APPDATA%, which every test run shares."""
        home = config_home if config_home is not None else cwd / ".config-home"
        return dict(self.env, XDG_CONFIG_HOME=windows_path(home))

    def command(self, args: list[str]) -> list[str]:
        return [self.wine, str(EXE), *args]

    def run(
        self,
        args: list[str],
        cwd: Path,
        timeout: float = CLIENT_TIMEOUT,
        config_home: Path | None = None,
    ) -> Run:
        proc = subprocess.run(
            self.command(args),
            check=False,
            cwd=cwd,
            env=self.env_for(cwd, config_home),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
        return Run(proc.returncode, _text(proc.stdout), _text(proc.stderr))


def _text(output: bytes) -> str:
    # The client writes UTF-8; the Windows C runtime turns each "\n" into "\r\n".
    return output.decode("utf-8", errors="replace").replace("\r\n", "\n")


def find_wine() -> str | None:
    return shutil.which("wine") or shutil.which("wine64")


def prepare_prefix(wine: str, prefix: Path) -> None:
    """Initialises the prefix once (wineboot, ~15 s) under a lock, so that concurrent test
    runs share it; then starts a lingering wineserver and Wine's services for the runs."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    env = Wine(wine, prefix).env
    with open(prefix.parent / f"{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (prefix / "system.reg").is_file():
            subprocess.run(
                [wine, "wineboot", "--init"],
                env=env,
                check=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=600,
            )
        wineserver = shutil.which("wineserver") or "/usr/lib/wine/wineserver64"
        # Starts (and detaches) a server for this prefix, or leaves a running one alone.
        # Not captured: the detached server would hold the pipes open.
        subprocess.run(
            [wineserver, f"-p{WINESERVER_LINGER_SECONDS}"],
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        # The first Windows program starts Wine's services (winedevice.exe...), which
        # inherit its standard handles and live as long as the server: started by a run
        # whose output a test captures, they would keep its pipes open for the whole
        # linger time. Started here, with no pipes, they serve every run that follows.
        subprocess.run(
            [wine, str(EXE), "--version"],
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=600,
        )


def imported_dlls(exe: Path) -> set[str]:
    """The DLLs a PE file imports, as MinGW's objdump lists them."""
    out = subprocess.run(
        [MINGW_OBJDUMP, "-p", str(exe)], check=True, capture_output=True, text=True
    ).stdout
    return {line.split(":", 1)[1].strip() for line in out.splitlines() if "DLL Name:" in line}
