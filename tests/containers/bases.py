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
#: Files copied into a base (its entrypoint scripts), beside this module.
IMAGES = Path(__file__).with_name("images")


@dataclass(frozen=True)
class Base:
    tag: str
    suite: str
    packages: tuple[str, ...]
    #: Extra mmdebstrap --customize-hook shell commands ("$1" is the new root).
    hooks: tuple[str, ...] = ()
    #: docker import --change instructions.
    changes: tuple[str, ...] = ()
    #: (file under images/, path in the image): copied in, mode 0755.
    files: tuple[tuple[str, str], ...] = ()

    def recipe(self) -> str:
        """What the image is made of: a change rebuilds it."""
        contents = [_digest(IMAGES / name) for name, _ in self.files]
        parts = [self.suite, self.packages, self.hooks, self.changes, self.files, contents]
        text = json.dumps([*parts, _local_cas()])
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
#: Stands in for postgres:15-bookworm (the compose profile "scale"): Debian's PostgreSQL 15,
#: run as its user, with an entrypoint that reads the official image's variables.
POSTGRES = Base(
    "eft-ci/postgres:debian",
    "bookworm",
    ("postgresql", "ca-certificates"),
    hooks=(
        'mkdir -p "$1/var/lib/postgresql/data"'
        ' && chroot "$1" chown postgres:postgres /var/lib/postgresql/data'
        ' && chmod 700 "$1/var/lib/postgresql/data"',
    ),
    changes=(
        'ENTRYPOINT ["/usr/local/bin/eft-postgres"]',
        "ENV PGHOST=/tmp",
        "USER postgres",
        "EXPOSE 5432",
    ),
    files=(("postgres-entrypoint.sh", "/usr/local/bin/eft-postgres"),),
)
#: Stands in for haproxy:2.6-bookworm: Debian's haproxy 2.6, the official image's config
#: path, run in the foreground as its user.
HAPROXY = Base(
    "eft-ci/haproxy:debian",
    "bookworm",
    ("haproxy", "ca-certificates"),
    hooks=('mkdir -p "$1/usr/local/etc/haproxy"',),
    changes=(
        'ENTRYPOINT ["/usr/sbin/haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]',
        "USER haproxy",
        "EXPOSE 1256",
    ),
)
#: What the default lab needs (test_compose_lab.py); the profile "scale" adds the rest.
LAB = (PYTHON, DEBIAN, PROMETHEUS)
ALL = (*LAB, POSTGRES, HAPROXY)


def _local_cas() -> list[str]:
    if not LOCAL_CA.is_dir():
        return []
    return sorted(_digest(path) for path in LOCAL_CA.rglob("*.crt"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    for name, target in base.files:
        hooks += [
            f'mkdir -p "$1{Path(target).parent}"',
            f'cp {IMAGES / name} "$1{target}"',
            f'chmod 0755 "$1{target}"',
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


def ensure_all(engine: Engine, wanted: tuple[Base, ...] = ALL) -> list[str]:
    """Every CI base (or those ``wanted``); the tags built this time (empty when all came
    from the cache)."""
    return [base.tag for base in wanted if ensure(engine, base)]
