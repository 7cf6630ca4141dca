"""Shared fixtures: a real eft server process per test, client directories, proxies."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import settings

from eft_server import log as server_log
from tests.support.processes import ClientDir, ProxyProcess, ServerProcess

# Loaded before any test module is imported, so every @settings inherits it. "ci": the
# same examples every run (a seed derived from each test, no example database) and no
# per-example deadline (a busy machine is slow, not wrong). "deep": fresh random examples,
# for `make test-deep`, with the example database kept to replay what it finds.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("deep", deadline=None, max_examples=1000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A shell starts background jobs (CI's run, for one) with SIGINT ignored, and Python then
# leaves it ignored: every process a test starts would inherit that, and the tests that
# press Ctrl-C on a client or on the lab would test nothing. Handled here, a started
# process gets SIGINT's default back, as on a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: The module-level thread pools a forked child makes again (the server's chunk writers
#: and group syncs; the in-process client's hashing thread).
FORKED_POOLS = (
    ("eft_server.partial_uploads", "_WRITERS"),
    ("eft_server.partial_uploads", "_SYNCERS"),
    ("eft_client.transfer_v4", "_HASHER"),
)


def _fresh_pools_in_a_forked_child() -> None:
    """mutmut runs each mutant in a child forked from a process that ran the tests: the
    thread pools it inherits have no threads, so every background sync, and every
    resumable chunk's write, and the in-process client's hashing of a chunk, would wait
    for ever (and count as a timeout, a false kill). The child makes its own pools, of
    the same sizes."""
    sync_behind = sys.modules.get("eft_server.sync_behind")
    if sync_behind is not None:
        sync_behind._executor.cache_clear()
    for module_name, name in FORKED_POOLS:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        inherited = getattr(module, name)
        fresh = concurrent.futures.ThreadPoolExecutor(
            max_workers=inherited._max_workers,
            thread_name_prefix=inherited._thread_name_prefix,
        )
        setattr(module, name, fresh)


os.register_at_fork(after_in_child=_fresh_pools_in_a_forked_child)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def make(
        *args: str,
        name: str = "server",
        hold_port: bool = True,
        env: dict[str, str] | None = None,
        start: bool = True,
    ) -> ServerProcess:
        """A server on 127.0.0.1; ``hold_port`` (the default) keeps its port for restarts
        (see ServerProcess), False lets the server bind port 0 itself; ``env`` is added to
        its environment; ``start=False`` leaves starting it to the test."""
        root = tmp_path / name
        root.mkdir()
        server = ServerProcess(
            root / "data", tmp_path / f"{name}.log", args=args, hold_port=hold_port
        )
        server.env.update(env or {})
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()
        server.release()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory()


@pytest.fixture
def client_factory(tmp_path: Path) -> Callable[..., ClientDir]:
    def make(name: str, address: str) -> ClientDir:
        return ClientDir(tmp_path / "clients" / name, name, address)

    return make


@pytest.fixture
def proxy_factory(tmp_path: Path) -> Iterator[Callable[..., ProxyProcess]]:
    proxies: list[ProxyProcess] = []

    def make(target: str, corrupt: str, *extra: str) -> ProxyProcess:
        proxy = ProxyProcess(target, corrupt, tmp_path / f"proxy{len(proxies)}.log", extra)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.stop()


# --- the time ledger: how long each folder of tests took (make test prints it) --------

_FOLDER_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    folder = "/".join(report.nodeid.split("/")[:2]).split("::")[0]
    _FOLDER_SECONDS[folder] = _FOLDER_SECONDS.get(folder, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FOLDER_SECONDS:
        return
    terminalreporter.section("time by folder")
    for folder, seconds in sorted(_FOLDER_SECONDS.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{folder:<28} {seconds:8.1f} s")
    ledger = os.environ.get("EFT_LEDGER")
    if ledger:
        with open(ledger, "a") as out:
            for folder, seconds in sorted(_FOLDER_SECONDS.items()):
                out.write(f"  pytest {folder}\t{seconds:.1f}\t-\n")


# In-process servers configure structlog (server_log.configure_logging) at their own
# level; without caching, and with the configuration put back after each test, a later
# test's capture_logs sees every line whatever an earlier test configured.
server_log.CACHE_LOGGERS = False


@pytest.fixture(autouse=True)
def _structlog_configuration_put_back() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
