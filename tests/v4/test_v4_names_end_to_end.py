"""The Python client and server, real processes: names people use, ``--as``, and a
file the server has no room for (exit 10, before any data)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path

from eft_client.errors import ExitCode
from tests.support.processes import ClientDir, ServerProcess, write_random_file


def _v4(client_factory: Callable[..., ClientDir], name: str, address: str) -> ClientDir:
    client = client_factory(name, address)
    client.protocol = 4
    return client


def _own(server: ServerProcess, client: ClientDir) -> Path:
    return server.data_dir / "v4" / "files" / client.client_id_hex


def test_names_people_use_and_a_folder_chosen_with_as(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = _v4(client_factory, "nadia", server.address)
    names = ["report (final).pdf", "a+b@c.txt", unicodedata.normalize("NFD", "résumé.pdf")]
    files = [write_random_file(tmp_path / name, 1000 + i, seed=i) for i, name in enumerate(names)]
    run = client.run(files)
    assert run.returncode == 0, run.stderr
    own = _own(server, client)
    for path in files:  # a decomposed local name is stored in NFC
        stored = own / unicodedata.normalize("NFC", path.name)
        assert stored.read_bytes() == path.read_bytes()
    source = write_random_file(tmp_path / "IMG_0001.JPG", 3000, seed=9)
    run = client.run([source], "--as", "photos/2024/img 1.jpg")
    assert run.returncode == 0, run.stderr
    assert (own / "photos" / "2024" / "img 1.jpg").read_bytes() == source.read_bytes()
    assert not (own / "IMG_0001.JPG").exists()


def test_as_refuses_a_hostile_name_and_several_files_before_connecting(
    client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    client = _v4(client_factory, "olga", "127.0.0.1:1")  # nothing listens: never reached
    one = write_random_file(tmp_path / "one.bin", 10)
    run = client.run([one], "--as", "../escape.bin")
    assert run.returncode == ExitCode.USAGE and "'..' component" in run.stderr
    two = write_random_file(tmp_path / "two.bin", 10)
    run = client.run([one, two], "--as", "x.bin")
    assert run.returncode == ExitCode.USAGE and "--as names one file" in run.stderr
    client.protocol = 3
    run = client.run([one], "--as", "x.bin")
    assert run.returncode == ExitCode.USAGE and "--as is version 4's" in run.stderr


def test_no_space_on_the_server_is_exit_10(
    server_factory: Callable[..., ServerProcess],
    client_factory: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = server_factory("--keep-free", str(1 << 60))  # no disk has this much free
    client = _v4(client_factory, "pia", server.address)
    run = client.run([write_random_file(tmp_path / "f.bin", 2 << 20, seed=3)])
    assert run.returncode == ExitCode.NO_ROOM == 10, run.stderr
    assert "no space" in run.stderr
    assert not _own(server, client).joinpath("f.bin").exists()
    failed = [e for e in run.events if e["event"] == "failed"]
    assert failed and failed[0]["exit_code"] == 10
    assert "progress" not in run.kinds()  # refused before any data
