"""The checker's recording connection (check/eft_check/probe.py), on its own, against a
listening socket of the test on 127.0.0.1: it logs every frame both ways, reads a
response by its declared size however it arrives, and turns each way a server under
test can get a response wrong into a finding (or ``Closed``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from eft_check.probe import Answer, Closed, Probe, expected_size
from eft_check.report import Finding, Frame, Status
from eft_protocol.codes import RESPONSE_HEADER, ResponseCode


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def _pair(listener: socket.socket, timeout: float = 30) -> tuple[Probe, socket.socket, list[Frame]]:
    log: list[Frame] = []
    probe = Probe(listener.getsockname()[:2], timeout, log)
    server, _ = listener.accept()
    return probe, server, log


def test_a_response_in_pieces_is_read_whole_and_logged(listener: socket.socket) -> None:
    probe, server, log = _pair(listener)
    with server:
        frame = RESPONSE_HEADER.pack(3, ResponseCode.REGISTERED, 16) + bytes(range(16))
        server.sendall(frame[:3])
        server.sendall(frame[3:])
        answer = probe.receive()
        probe.close()
    assert answer == Answer(3, 1600, 16, bytes(range(16)))
    assert answer.known_code and answer.describe() == "1600 with 16 payload bytes"
    assert [(f.direction, f.data, f.request) for f in log] == [("received", frame, False)]


def test_frames_sent_together_arrive_as_one_and_are_logged_each(listener: socket.socket) -> None:
    probe, server, log = _pair(listener)
    with server:
        probe.send_together(b"one", b"two")
        probe.send(b"three")
        probe.close()
        received = b""
        while chunk := server.recv(100):
            received += chunk
    assert received == b"onetwothree"
    assert [(f.direction, f.data) for f in log] == [
        ("sent", b"one"),
        ("sent", b"two"),
        ("sent", b"three"),
    ]


def test_a_payload_cut_short_is_a_size_mismatch(listener: socket.socket) -> None:
    probe, server, log = _pair(listener)
    with server:
        server.sendall(RESPONSE_HEADER.pack(3, ResponseCode.FILE_RECEIVED, 279) + b"x")
        server.close()
        with pytest.raises(Finding) as found:
            probe.receive()
    probe.close()
    assert (found.value.status, found.value.mistake) == (Status.FAIL, "payload-size-mismatch")
    assert "279 payload bytes" in found.value.expected
    assert log and log[-1].direction == "received", "what came is shown"


def test_a_header_that_is_not_version_3_is_a_finding(listener: socket.socket) -> None:
    probe, server, _ = _pair(listener)
    with server:
        server.sendall(RESPONSE_HEADER.pack(4, 1600, 0))
        with pytest.raises(Finding) as found:
            probe.receive()
    probe.close()
    assert "version 4" in found.value.got


def test_a_close_before_anything_is_closed_and_silence_a_finding(listener: socket.socket) -> None:
    probe, server, log = _pair(listener)
    server.close()
    with pytest.raises(Closed, match="closed after 0 of 7 bytes"):
        probe.receive()
    probe.close()
    assert log == []
    quiet, server, _ = _pair(listener, timeout=0.05)
    with server, pytest.raises(Finding) as found:  # open, and saying nothing
        quiet.receive()
    quiet.close()
    assert "then silence for 0.05 s" in found.value.got


def test_the_expected_payload_sizes() -> None:
    assert expected_size(1600) == 16
    assert expected_size(1607) == 0
    assert expected_size(1999) is None
