"""Names people use, and hostile ones, against a real server through a raw client
(``wire_client.WireV4``: it sends any bytes as a name, unchecked). Each hostile path is
refused with its own message (1607 error 2, the session goes on) and nothing is written
outside the client's folder; a symbolic link planted in that folder is never followed;
a file that does not fit is refused before its data (1607 error 8)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eft_protocol.codes import RequestCode, ResponseCode
from eft_protocol.v4 import records as rec
from eft_protocol.v4.file_digest import file_digest
from tests.support.processes import ServerProcess
from tests.v4.wire_client import WireV4, meta_plaintext, new_upload_id

ACK, RECEIVED, ERROR = ResponseCode.ACKNOWLEDGED, ResponseCode.FILE_RECEIVED, 1607


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("paths4")
    (base / "server").mkdir()
    server = ServerProcess(base / "server" / "data", base / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _store(peer: WireV4, file_id: int, name: str | bytes, data: bytes) -> tuple[int, bytes]:
    """Metadata, data, 900: the answer to the metadata if it was refused, else the ack."""
    code, plaintext = peer.meta(file_id, len(data), new_upload_id(), name)
    if code != ACK:
        return code, plaintext
    peer.chunks(file_id, data)
    code, plaintext = peer.response()
    assert code == RECEIVED, code
    assert rec.decode_received(plaintext)[2:] == (1, file_digest(data).digest())
    return peer.verdict(RequestCode.CRC_OK, file_id)


def _own(server: ServerProcess, peer: WireV4) -> Path:
    return server.data_dir / "v4" / "files" / peer.client_id.hex()


def _everything(root: Path) -> set[Path]:
    return {Path(folder, name) for folder, dirs, files in os.walk(root) for name in dirs + files}


NAMES_PEOPLE_USE = ["report (final).pdf", "résumé.pdf", "a+b@c.txt", "photos/2024/img 1.jpg"]


def test_names_people_use_are_stored_as_they_are(shared: ServerProcess) -> None:
    peer = WireV4(shared.address)
    peer.register("people")
    for file_id, name in enumerate(NAMES_PEOPLE_USE, start=1):
        data = name.encode() * 3
        assert _store(peer, file_id, name, data)[0] == ACK, name
        assert (_own(shared, peer) / name).read_bytes() == data
    peer.close()
    assert (_own(shared, peer) / "photos" / "2024").stat().st_mode & 0o777 == 0o700


HOSTILE: dict[str, bytes] = {
    "'..' component": b"../escape.txt",
    "absolute path": b"/tmp/escape.txt",
    "backslash": b"..\\escape.txt",
    "empty component": b"photos//escape.txt",
    "'.' component": b"./escape.txt",
    "control character U+0000": b"esc\x00ape.txt",
    "control character U+202E": "gpj\u202eexe.txt".encode(),
    "not valid UTF-8": b"caf\xe9.txt",
    "not in Unicode NFC": "re\u0301sume\u0301.pdf".encode(),
    "reserved device name": b"sub/CON.txt",
    "ends in a dot or a space": b"sub./x.txt",
    "levels deep": b"d/" * 32 + b"x.txt",
    "bytes; at most 1024": b"d" * 200 + (b"/" + b"d" * 200) * 5,
    "contains ':'": b"C:escape.txt",
}


def test_each_hostile_path_is_refused_with_its_own_error_and_nothing_escapes(
    shared: ServerProcess,
) -> None:
    peer = WireV4(shared.address)
    peer.register("hostile")
    before = _everything(shared.data_dir)
    messages = []
    for file_id, (words, name) in enumerate(HOSTILE.items(), start=1):
        code, plaintext = _store(peer, file_id, name, b"escape")
        assert code == ERROR, words
        error, message = rec.decode_error(plaintext)
        assert error == rec.ErrorCode.BAD_FILE_NAME and words in message, message
        messages.append(message)
    assert len(set(messages)) == len(HOSTILE)
    last = len(HOSTILE) + 1
    assert _store(peer, last, "fine.txt", b"ok")[0] == ACK  # the session went on
    peer.close()
    after = _everything(shared.data_dir) - before
    written = {p for p in after if "partial" not in p.parts and p.suffix != ".log"}
    own = _own(shared, peer)
    assert all(p == own or own in p.parents for p in written), written
    assert not any("escape" in p.name for p in _everything(shared.data_dir.parent))


def test_a_symbolic_link_in_the_clients_folder_is_never_followed(
    shared: ServerProcess, tmp_path: Path
) -> None:
    peer = WireV4(shared.address)
    peer.register("linked")
    assert _store(peer, 1, "first.txt", b"1")[0] == ACK
    outside = tmp_path / "outside"
    outside.mkdir()
    (_own(shared, peer) / "link").symlink_to(outside)  # planted on the server's disk
    code, plaintext = _store(peer, 2, "link/x.txt", b"through the link")
    assert code == ERROR
    assert rec.decode_error(plaintext) == (
        rec.ErrorCode.BAD_FILE_NAME,
        "link is a symbolic link on the server",
    )
    (_own(shared, peer) / "file").write_bytes(b"")
    code, plaintext = _store(peer, 3, "file/x.txt", b"under a file")
    assert rec.decode_error(plaintext)[1] == "file is a file on the server, not a folder"
    (_own(shared, peer) / "folder").mkdir()
    code, plaintext = _store(peer, 4, "folder", b"onto a folder")
    assert rec.decode_error(plaintext)[1] == "folder is a folder on the server"
    # A link where the file itself goes is refused too (were it planted after this
    # check, the commit's rename would replace the link, not write through it).
    (_own(shared, peer) / "target.txt").symlink_to(outside / "victim.txt")
    code, plaintext = _store(peer, 5, "target.txt", b"stored")
    assert rec.decode_error(plaintext)[1] == "target.txt is a symbolic link on the server"
    assert _store(peer, 6, "fine/x.txt", b"ok")[0] == ACK  # the session went on
    peer.close()
    assert list(outside.iterdir()) == []


def test_a_file_larger_than_the_free_space_is_refused_before_its_data(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory("--keep-free", str(1 << 60))  # no disk has this much free
    peer = WireV4(server.address)
    peer.register("full")
    code, plaintext = peer.meta(1, 10, new_upload_id(), "ten.bin")
    assert code == ERROR
    error, message = rec.decode_error(plaintext)
    assert error == rec.ErrorCode.NO_SPACE and "needs 10 more bytes" in message
    assert list((server.data_dir / "v4" / "partial").glob("*/*")) == []  # nothing kept
    assert _store(peer, 2, "empty.bin", b"")[0] == ACK  # the session goes on; 0 B fits
    peer.close()


def test_an_unknown_digest_algorithm_is_refused_by_name(shared: ServerProcess) -> None:
    peer = WireV4(shared.address)
    peer.register("algorithm")
    peer.request(RequestCode.SEND_FILE, meta_plaintext(1, 5, new_upload_id(), "a.txt", 7))
    code, plaintext = peer.response()
    assert code == ERROR
    assert rec.decode_error(plaintext) == (
        rec.ErrorCode.UNKNOWN_DIGEST,
        "unknown digest algorithm 7",
    )
    peer.close()
