"""The checker's steps of a version-3 session (check/eft_check/server_steps.py), on
their own: each way an answer's header or a 1603's fields can be wrong is named, the
deliberately wrong packet forms are what they claim, and the steps take a whole session
through our own server's connection, run in this process over loopback."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import pytest

from eft_check.packets import Attempt, Packet
from eft_check.probe import Answer, Probe
from eft_check.report import Finding, Status
from eft_check.server_steps import (
    Identity,
    check_header,
    handshake,
    judge_file_received,
    packets,
    receive_file_received,
    verdict,
)
from eft_protocol import crypto, wire
from eft_protocol.cksum import cksum
from eft_protocol.codes import PACKET_FIELDS, ResponseCode, padded_size
from tests.unit.in_process_server import make_context, serve_one

WHO = Identity("tess", bytes(range(16)), bytes(range(32)))
DATA = random.Random(2).randbytes(5000)
KEY = crypto.generate_rsa_key(random.Random(6).randbytes)


def _received(content_size: int, name: bytes, crc: int) -> Answer:
    payload = WHO.client_id + struct.pack("<I255sI", content_size, name, crc)
    return Answer(3, ResponseCode.FILE_RECEIVED, len(payload), payload)


@pytest.mark.parametrize(
    ("answer", "want", "mistake", "status"),
    [
        (Answer(3, 1607, 0, b""), ResponseCode.REGISTERED, None, Status.FAIL),
        (Answer(3, 1604, 0, b""), ResponseCode.ACKNOWLEDGED, "empty-1604", Status.FAIL),
        (Answer(3, 1606, 0, b""), ResponseCode.RECONNECT_DENIED, "empty-1606", Status.DEVIATION),
        (
            Answer(3, 1600, 4, b"abcd"),
            ResponseCode.REGISTERED,
            "payload-size-mismatch",
            Status.FAIL,
        ),
    ],
)
def test_each_wrong_header_is_named(
    answer: Answer, want: ResponseCode, mistake: str | None, status: Status
) -> None:
    with pytest.raises(Finding) as found:
        check_header(answer, want)
    assert (found.value.mistake, found.value.status) == (mistake, status)
    if answer.code == 1607:
        assert found.value.got == "1607 (server error)"


def test_a_right_header_passes() -> None:
    check_header(Answer(3, 1600, 16, bytes(16)), ResponseCode.REGISTERED)


def test_a_1603_is_judged_field_by_field() -> None:
    size = padded_size(len(DATA))
    assert judge_file_received(_received(size, b"f.bin", cksum(DATA)), WHO, "f.bin", DATA) == []
    with pytest.raises(Finding) as found:
        judge_file_received(_received(size, b"f.bin", zlib.crc32(DATA)), WHO, "f.bin", DATA)
    assert found.value.mistake == "crc32-not-cksum"
    tolerated = judge_file_received(_received(len(DATA), b"g.bin", cksum(DATA)), WHO, "f.bin", DATA)
    assert [finding.mistake for finding in tolerated] == ["plaintext-sizes", None]
    assert "file name" in tolerated[1].expected


def test_the_wrong_packet_forms_are_what_they_claim() -> None:
    def attempt(frames: list[bytes]) -> Attempt:
        judged = Attempt()
        for frame in frames:
            size, orig, number, total, name = PACKET_FIELDS.unpack_from(frame, 23)
            judged.add(Packet(size, orig, number, total, name, frame[23 + PACKET_FIELDS.size :]))
        return judged

    right = attempt(packets(WHO, "f.bin", DATA, 1024))
    assert right.judge(WHO.aes_key, DATA).findings == []
    swapped = attempt(packets(WHO, "f.bin", DATA, 1024, swapped=True))
    assert [f.mistake for f in swapped.judge(WHO.aes_key, DATA).findings] == [
        "swapped-packet-fields"
    ]
    alone = attempt(packets(WHO, "f.bin", DATA, 1024, per_packet_cbc=True))
    assert "per-packet-cbc" in [f.mistake for f in alone.judge(WHO.aes_key, DATA).findings]


def test_the_steps_take_a_session_through_our_server(tmp_path: Path) -> None:
    context = make_context(tmp_path / "data")

    def session(address: str) -> tuple[Identity, list[Finding]]:
        host, _, port = address.rpartition(":")
        probe = Probe((host, int(port)), 30, [])
        who = handshake(probe, KEY, "tess")
        frames = packets(who, "f.bin", DATA, 1024)
        probe.send(*frames)
        _, tolerated = receive_file_received(probe, who, "f.bin", DATA, len(frames))
        verdict(probe, who, "f.bin")
        probe.close()
        return who, tolerated

    (who, tolerated), _ = serve_one(context, session)
    assert tolerated == []
    record = context.registry.file(who.client_id, "f.bin")
    assert record is not None and Path(record.path).read_bytes() == DATA
    client = context.registry.client_by_id(who.client_id)
    assert client is not None and client.aes_key == who.aes_key, "the key the server issued"
    assert who.client_id != wire.ZERO_CLIENT_ID
