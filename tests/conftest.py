"""Shared fixtures: a real eft server process per test, client directories, proxies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import ClientDir, ProxyProcess, ServerProcess


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def make(*args: str, name: str = "server") -> ServerProcess:
        root = tmp_path / name
        root.mkdir()
        server = ServerProcess(root / "data", tmp_path / f"{name}.log", args=args)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


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
