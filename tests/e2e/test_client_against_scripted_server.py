"""The Python client against an independent, scripted v3 server (tests/support).

That server does what real servers in the wild do, or do by accident: answer 1607 a
few times, answer 901 with 1604, send 1606 empty, break a reply, hang up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eft_client.errors import ExitCode
from tests.support.fake_v3_server import Behaviour, FakeV3Server, response
from tests.support.processes import ClientDir, write_random_file


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_random_file(tmp_path / "payload.bin", 3000, seed=9)


def _client(tmp_path: Path, server: FakeV3Server, name: str = "zoe") -> ClientDir:
    return ClientDir(tmp_path / "client", name, server.address)


@pytest.mark.parametrize("code", [825, 826, 828, 900])
def test_three_1607s_are_retried_and_the_fourth_try_succeeds(
    tmp_path: Path, source: Path, code: int
) -> None:
    with FakeV3Server(Behaviour(errors_1607={code: 3})) as server:
        run = _client(tmp_path, server).run([source])
    assert run.returncode == 0, run.stderr
    assert [e["attempt"] for e in run.events if e["event"] == "server_error"] == [1, 2, 3]
    # Each request sent four times: the first and three retries (a 3000-byte file is
    # one 828 packet, so the file is sent four times too).
    assert server.requests.count(code) == 4
    assert next(iter(server.files.values())) == source.read_bytes()


@pytest.mark.parametrize("code", [825, 826, 828, 900])
def test_four_1607s_end_with_the_server_error_exit_code(
    tmp_path: Path, source: Path, code: int
) -> None:
    with FakeV3Server(Behaviour(errors_1607={code: 4})) as server:
        run = _client(tmp_path, server).run([source])
    assert run.returncode == ExitCode.SERVER_ERROR, run.stderr
    assert "server error" in run.stderr


@pytest.mark.parametrize("empty_1606", [False, True], ids=["1606-with-id", "1606-empty"])
def test_a_denied_reconnect_registers_again_only_when_asked(
    tmp_path: Path, source: Path, empty_1606: bool
) -> None:
    with FakeV3Server(Behaviour(empty_1606=empty_1606)) as server:
        client = _client(tmp_path, server)
        assert client.run([source]).returncode == 0
        first_id = client.client_id_hex
        server.clients.clear()  # the server forgets everyone, as after a restart
        before = len(server.requests)
        denied = client.run([source])
        assert denied.returncode == ExitCode.IDENTITY, denied.stderr
        assert "reconnect_denied" in denied.kinds()
        assert client.client_id_hex == first_id  # kept: version 3 cannot authenticate 1606
        assert server.requests[before:] == [827]
        before = len(server.requests)
        run = client.run([source], "--re-register")
    assert run.returncode == 0, run.stderr
    assert "reconnect_denied" in run.kinds()
    assert client.client_id_hex != first_id
    assert server.requests[before:] == [827, 825, 826, 828, 900]
    kept = next(e for e in run.events if e["event"] == "identity_set_aside")["files"]
    assert first_id in Path(kept[0]).read_text()


@pytest.mark.parametrize("answer_901", [False, True], ids=["silent-901", "1604-after-901"])
def test_crc_retry_works_whether_or_not_901_is_answered(
    tmp_path: Path, source: Path, answer_901: bool
) -> None:
    with FakeV3Server(Behaviour(answer_901=answer_901, corrupt_crc=2)) as server:
        run = _client(tmp_path, server).run([source])
    assert run.returncode == 0, run.stderr
    assert [e["attempt"] for e in run.events if e["event"] == "crc_mismatch"] == [1, 2]
    assert server.requests.count(901) == 2
    assert server.requests[-1] == 900


def test_crc_wrong_every_time_sends_902_on_the_fourth_attempt(tmp_path: Path, source: Path) -> None:
    with FakeV3Server(Behaviour(corrupt_crc=-1)) as server:
        run = _client(tmp_path, server).run([source])
    assert run.returncode == ExitCode.INTEGRITY_FAILED
    assert server.requests.count(901) == 3
    assert server.requests[-1] == 902


def test_a_taken_name_is_reported_as_refused(tmp_path: Path, source: Path) -> None:
    with FakeV3Server(Behaviour(refuse_names={"zoe"})) as server:
        run = _client(tmp_path, server).run([source])
    assert run.returncode == ExitCode.REGISTRATION_REFUSED
    assert "name" in run.stderr and "taken" in run.stderr


BROKEN_REPLIES: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "version-4": (825, lambda r: bytes([4]) + r[1:]),
    "unknown-code": (825, lambda r: response(1234, r[7:])),
    "huge-payload": (825, lambda r: r[:3] + (2**31).to_bytes(4, "little")),
    "1600-short": (825, lambda r: response(1600, r[7:15])),
    "1604-for-828": (828, lambda r: response(1604, bytes(16))),
    "1603-for-900": (900, lambda r: response(1603, bytes(279))),
}


@pytest.mark.parametrize("case", sorted(BROKEN_REPLIES))
def test_a_reply_that_breaks_the_protocol_is_a_server_error(
    tmp_path: Path, source: Path, case: str
) -> None:
    code, breaker = BROKEN_REPLIES[case]
    with FakeV3Server(Behaviour(override={code: breaker})) as server:
        run = _client(tmp_path, server).run([source], "--timeout", "5")
    assert run.returncode == ExitCode.SERVER_ERROR, (case, run.stderr)
    assert "protocol" in run.stderr


def test_an_empty_1604_after_a_verified_file_is_accepted(tmp_path: Path, source: Path) -> None:
    """A server in the wild answers 900 with a 1604 carrying no client id (spec section 8,
    tolerances): the file is stored and verified, so the run succeeds."""
    empty = response(1604, b"")
    with FakeV3Server(Behaviour(override={900: lambda _reply: empty})) as server:
        run = _client(tmp_path, server).run([source])
    assert run.returncode == 0, run.stderr
    assert "file_verified" in run.kinds()


def test_a_server_that_hangs_up_is_a_lost_connection(tmp_path: Path, source: Path) -> None:
    with FakeV3Server(Behaviour(close_on={828})) as server:
        # It accepts and hangs up every time: no progress, so the client gives up when the
        # retry window (2 s here, a minute by default) has passed.
        run = _client(tmp_path, server).run([source], "--retry-for", "2")
    assert run.returncode == ExitCode.CANNOT_CONNECT
    retries = [e for e in run.events if e["event"] == "connection_retry"]
    assert len(retries) >= 2 and all(r["give_up_in"] <= 2 for r in retries)
    assert "closed" in run.stderr


def test_nobody_listening_is_cannot_connect(tmp_path: Path, source: Path) -> None:
    client = ClientDir(tmp_path / "client", "zoe", "127.0.0.1:1")
    run = client.run([source])
    assert run.returncode == ExitCode.CANNOT_CONNECT
    assert "cannot connect" in run.stderr
