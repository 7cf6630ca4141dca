"""The scripted server that ``eft-check client`` runs a client under test against
(check/eft_check/scripted_server.py), on its own, with a test client over loopback:
it records each request and judges each attempt, and each scenario does what it says
(1607s first, 1601, a wrong cksum, 1606 after it forgets, a garbled header noted)."""

from __future__ import annotations

import random
import struct

from eft_check.scripted_server import Script, ScriptedServer
from eft_protocol import crypto
from eft_protocol.cksum import cksum
from eft_protocol.client_session import ClientSession
from eft_protocol.codes import ResponseCode
from tests.support.raw_client import RawClient

KEY = crypto.generate_rsa_key(random.Random(12).randbytes)
DATA = random.Random(13).randbytes(3000)


def _server(script: Script) -> ScriptedServer:
    server = ScriptedServer(script, patience=30, timeout=30)
    server.expected_file = DATA
    return server


def _client(server: ScriptedServer) -> RawClient:
    return RawClient(f"127.0.0.1:{server.port}", new_key=lambda: KEY)


def _register_codes(server: ScriptedServer, times: int) -> list[int]:
    """825 ``times`` on one connection: each answer's code."""
    client = _client(server)
    codes = []
    for _ in range(times):
        client.send(*ClientSession("uma", new_key=lambda: KEY).start())
        codes.append(int(client.receive().code))
    client.close()
    return codes


def _first_cksum(server: ScriptedServer) -> int:
    """A new client's file: the cksum its 1603 carries."""
    client = _client(server)
    session = client.handshake("uma")
    sender = session.begin_file("f.bin", len(DATA), 1024)
    client.send(*sender.feed(DATA), *sender.finish())
    answer = client.receive()
    client.close()
    assert answer.code == ResponseCode.FILE_RECEIVED
    crc: int = struct.unpack_from("<I", answer.encode(), 7 + 16 + 4 + 255)[0]
    return crc


def test_a_good_session_is_recorded_and_its_attempt_has_no_finding() -> None:
    with _server(Script()) as server:
        client = _client(server)
        client.handshake("uma")
        client.send_file("f.bin", DATA)  # raises unless 1603's cksum matched and 1604 came
        client.close()
    codes = server.codes()
    assert codes[:2] == [825, 826] and codes[-1] == 900 and set(codes[2:-1]) == {828}
    assert len(server.attempts) == 1 and server.attempts[0].complete
    assert server.findings == []
    assert [frame.direction for frame in server.frames].count("sent") == 4


def test_1607s_come_first_as_scripted_then_the_answer() -> None:
    with _server(Script(errors_1607={825: 2})) as server:
        assert _register_codes(server, 3) == [1607, 1607, 1600]


def test_a_refused_name_is_1601() -> None:
    with _server(Script(refuse_name=True)) as server:
        assert _register_codes(server, 1) == [ResponseCode.REGISTRATION_FAILED]


def test_a_wrong_cksum_only_for_the_scripted_answers() -> None:
    with _server(Script(wrong_crc=1)) as server:
        assert _first_cksum(server) != cksum(DATA)
        assert _first_cksum(server) == cksum(DATA)


def test_a_garbled_header_is_noted_and_the_connection_dropped() -> None:
    with _server(Script()) as server:
        client = _client(server)
        client.send(bytes(16) + struct.pack("<BHI", 2, 825, 255))
        assert client.closed_by_server()
        client.close()
    assert len(server.findings) == 1
    assert "version 2" in server.findings[0].got
