"""CI's base images, built here from Debian packages: no container registry is reachable.

Each is ``mmdebstrap --variant=minbase --format=tar SUITE`` with no mirror named (it
uses its default: the suite, its updates and, for a stable suite, security), then
``docker import``. The host's extra CA certificates (Debian's local CA directory), if
any, are trusted inside too, so ``pip`` and ``apt-get`` in a ``RUN`` step work behind a
proxy the host trusts. The tags are our own (``eft-ci/...``), never an official image's
name. An image is reused while its recipe and its build date (UTC day) are unchanged, so
a warm run skips the bootstrap and a day later it is rebuilt with that day's updates.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .engine import Engine, EngineError

LOCAL_CA = Path("/usr/local/share/ca-certificates")


@dataclass(frozen=True)
class Base:
    tag: str
    suite: str
    packages: tuple[str, ...]
    #: Extra mmdebstrap --customize-hook shell commands ("$1" is the new root).
    hooks: tuple[str, ...] = ()
    #: docker import --change instructions.
    changes: tuple[str, ...] = ()

    def recipe(self) -> str:
        """What the image is made of: a change rebuilds it."""
        text = json.dumps([self.suite, self.packages, self.hooks, self.changes, _local_cas()])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: Stands in for python:3.12-slim (trixie's python3 is 3.13, "externally managed":
#: both images install into a venv with the same steps).
PYTHON = Base("eft-ci/python:trixie", "trixie", ("python3", "python3-venv", "ca-certificates"))
#: Stands in for debian:bookworm-slim (Dockerfile.client-cpp).
DEBIAN = Base("eft-ci/debian:bookworm", "bookworm", ("ca-certificates",))
#: Stands in for prom/prometheus: Debian's prometheus package, run as its own user.
PROMETHEUS = Base(
    "eft-ci/prometheus:debian",
    "bookworm",
    ("prometheus", "ca-certificates"),
    hooks=('mkdir -p "$1/prometheus" && chroot "$1" chown prometheus:prometheus /prometheus',),
    changes=(
        'ENTRYPOINT ["/usr/bin/prometheus"]',
        "USER prometheus",
        "WORKDIR /prometheus",
        "EXPOSE 9090",
    ),
)
ALL = (PYTHON, DEBIAN, PROMETHEUS)


def _local_cas() -> list[str]:
    if not LOCAL_CA.is_dir():
        return []
    return sorted(hashlib.sha256(path.read_bytes()).hexdigest() for path in LOCAL_CA.rglob("*.crt"))


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def _labels(engine: Engine, tag: str) -> dict[str, str] | None:
    done = engine.run("image", "inspect", "--format", "{{json .Config.Labels}}", tag, check=False)
    if done.returncode != 0:
        return None
    labels: dict[str, str] | None = json.loads(done.stdout or "null")
    return labels or {}


def ensure(engine: Engine, base: Base) -> bool:
    """Build ``base`` unless today's image of the same recipe is there; True if built."""
    wanted = {"eft.ci.recipe": base.recipe(), "eft.ci.built": _today()}
    labels = _labels(engine, base.tag)
    if labels is not None and all(labels.get(k) == v for k, v in wanted.items()):
        return False
    hooks = []
    if _local_cas():
        hooks += [
            'mkdir -p "$1/usr/local/share/ca-certificates"',
            f'cp -r {LOCAL_CA}/. "$1/usr/local/share/ca-certificates/"',
            'chroot "$1" update-ca-certificates',
        ]
    hooks += list(base.hooks)
    with tempfile.TemporaryDirectory(prefix="eft-base-") as scratch:
        tarball = Path(scratch) / "root.tar"
        command = ["mmdebstrap", "--variant=minbase", "--format=tar", "--quiet"]
        command += [f"--include={','.join(base.packages)}"]
        command += [f"--customize-hook={hook}" for hook in hooks]
        command += [base.suite, str(tarball)]
        # stdin empty on purpose: mmdebstrap would read sources.list lines from it.
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise EngineError(f"mmdebstrap {base.suite} failed:\n{done.stdout}{done.stderr}")
        changes = [*base.changes, *(f"LABEL {k}={v}" for k, v in wanted.items())]
        args = [arg for change in changes for arg in ("--change", change)]
        engine.run("import", *args, str(tarball), base.tag, timeout=300)
    return True


def ensure_all(engine: Engine) -> list[str]:
    """Every CI base; the tags built this time (empty when all came from the cache)."""
    return [base.tag for base in ALL if ensure(engine, base)]
