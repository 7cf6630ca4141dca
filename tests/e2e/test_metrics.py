"""What an operator reads on /metrics of a real server: versions apart, the release, the
disk, no `_created` twins, and the registry's count right after a restart."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

from eft_lab.scrape import scrape, total
from eft_protocol import __version__
from tests.support.processes import ClientDir, ServerProcess, write_random_file


def _text(server: ServerProcess) -> str:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_metrics_of_both_versions_and_after_a_restart(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--metrics-port", "0")
    for protocol in (3, 4):
        client = client_factory(f"meter{protocol}", server.address)
        client.protocol = protocol
        source = write_random_file(tmp_path / f"m{protocol}.bin", 40_000 + protocol, seed=protocol)
        assert client.run([source]).returncode == 0
    assert server.metrics_port is not None
    values = scrape(server.metrics_port)
    for version in ("3", "4"):
        assert total(values, "eft_received_ciphertext_bytes_total", version=version) > 40_000
        stored = total(values, "eft_stored_plaintext_bytes_total", version=version)
        assert stored == 40_000 + int(version)
        assert total(values, "eft_transfer_duration_seconds_count", version=version) == 1
    assert total(values, "eft_registered_clients") == 2
    assert total(values, "eft_build_info", version=__version__) == 1
    assert 0 < total(values, "eft_data_dir_free_bytes") <= total(values, "eft_data_dir_size_bytes")
    assert "_created" not in _text(server)

    server.restart()
    assert server.metrics_port is not None
    # Before anyone registers again: the registry's clients of both versions.
    assert total(scrape(server.metrics_port), "eft_registered_clients") == 2
