"""The Wireshark dissector (monitoring/wireshark/eft.lua) on the shipped captures.

Each test runs Debian's ``tshark`` with the dissector on one capture of docs/captures
(made by ``python -m eft_lab.captures``, ``make captures``) and checks what it decodes.
Without tshark the tests are skipped, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eft_lab.captures import HELLO, REPORT, SCENARIOS
from eft_protocol.cksum import cksum

ROOT = Path(__file__).resolve().parents[2]
DISSECTOR = ROOT / "monitoring" / "wireshark" / "eft.lua"
CAPTURES = ROOT / "docs" / "captures"
V4_RECORD_MAX = 9 + (1 << 20) + 16


@pytest.fixture(scope="module", autouse=True)
def tshark_present() -> None:
    if shutil.which("tshark") is None:
        reason = "tshark is not installed (apt-get install tshark, or make system-deps)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the dissector's tests", pytrace=False)
        pytest.skip(reason)


def tshark(capture: str, *args: str) -> str:
    command = ["tshark", "-n", "-X", f"lua_script:{DISSECTOR}"]
    command += ["-r", str(CAPTURES / f"{capture}.pcapng"), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Lua" not in done.stderr, done.stderr  # a Lua error is only printed
    return done.stdout


Pdu = dict[str, str]


def _flatten(tree: Any, into: Pdu) -> None:
    """Every field of one eft PDU's tree, bytes as plain hex; expert messages joined."""
    for key, value in tree.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, dict):
                _flatten(item, into)
            elif key == "_ws.expert.message" and key in into:
                into[key] += " / " + item
            else:
                into.setdefault(key, item.replace(":", "") if HEX_BYTES.fullmatch(item) else item)


#: tshark prints bytes as aa:bb:cc.
HEX_BYTES = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2})+")


@functools.cache
def decode(capture: str, *args: str) -> tuple[Pdu, ...]:
    """Every eft PDU of ``capture``, in order, with its frame's addresses and stream."""
    frames = json.loads(tshark(capture, *args, "-Y", "eft", "-T", "json", "--no-duplicate-keys"))
    found: list[Pdu] = []
    for frame in frames:
        layers = frame["_source"]["layers"]
        trees = layers["eft"] if isinstance(layers["eft"], list) else [layers["eft"]]
        for tree in trees:
            pdu: Pdu = {
                "ip.src": layers["ip"]["ip.src"],
                "ip.dst": layers["ip"]["ip.dst"],
                "tcp.stream": layers["tcp"]["tcp.stream"],
                "frame.number": layers["frame"]["frame.number"],
            }
            _flatten(tree, pdu)
            found.append(pdu)
    return tuple(found)


def client_leg(pdu: Pdu) -> bool:
    """The man in the middle's leg to the victim (it listens on 127.0.0.2)."""
    return "127.0.0.2" in (pdu["ip.src"], pdu["ip.dst"])


def server_leg(pdu: Pdu) -> bool:
    return not client_leg(pdu)


def pdus(
    capture: str, code: int | None = None, leg: Callable[[Pdu], bool] | None = None
) -> list[Pdu]:
    return [
        pdu
        for pdu in decode(capture)
        if (code is None or pdu["eft.code"] == str(code)) and (leg is None or leg(pdu))
    ]


def codes(capture: str, leg: Callable[[Pdu], bool] | None = None) -> list[int]:
    return [int(pdu["eft.code"]) for pdu in pdus(capture, leg=leg)]


def test_every_scenario_has_a_small_capture() -> None:
    for name in SCENARIOS:
        capture = CAPTURES / f"{name}.pcapng"
        assert capture.is_file(), f"{capture} is missing: run make captures"
        assert capture.stat().st_size < 200 * 1024


def field(
    capture: str, name: str, code: int, leg: Callable[[Pdu], bool] | None = None
) -> list[str]:
    return [pdu.get(name, "") for pdu in pdus(capture, code, leg)]


def test_v3_upload_decodes_every_field() -> None:
    assert codes("v3-upload") == [
        *(825, 1600, 826, 1602, 828, 1603, 900, 1604),  # a new client
        *(827, 1605, 828, 828, 828, 1603, 900, 1604),  # its reconnect, a file in 3 packets
    ]
    assert field("v3-upload", "eft.v3.name", 825) == ["alice"]
    assert field("v3-upload", "eft.v3.name", 827) == ["alice"]
    [key] = pdus("v3-upload", 826)
    assert key["eft.v3.name"] == "alice"
    assert key["eft.v3.public_key.length"] == "160"
    assert key["eft.v3.public_key.exponent"] == "17"
    assert key["eft.v3.public_key"].endswith(key["eft.v3.public_key.modulus"] + "020111")
    packets = [
        (p["eft.v3.file_name"], p["eft.v3.packet_number"], p["eft.v3.total_packets"])
        for p in pdus("v3-upload", 828)
    ]
    assert packets == [
        ("hello.txt", "1", "1"),
        ("report.txt", "1", "3"),
        ("report.txt", "2", "3"),
        ("report.txt", "3", "3"),
    ]
    assert field("v3-upload", "eft.v3.orig_file_size", 828) == [
        str(len(HELLO)),
        *[str(len(REPORT))] * 3,
    ]
    assert field("v3-upload", "eft.v3.file_name", 1603) == ["hello.txt", "report.txt"]
    assert field("v3-upload", "eft.v3.cksum", 1603) == [str(cksum(HELLO)), str(cksum(REPORT))]
    assert [len(k) // 2 for k in field("v3-upload", "eft.v3.encrypted_aes_key", 1602)] == [128]
    assert [len(k) // 2 for k in field("v3-upload", "eft.v3.encrypted_aes_key", 1605)] == [128]


def test_v4_upload_shows_the_handshake_and_the_records() -> None:
    assert codes("v4-upload") == [
        *(826, 1602, 825, 1600, 828, 1604, 828, 1603, 900, 1604),  # registers
        *(826, 1602, 827, 1605, 828, 1604, 828, 1603, 900, 1604),  # logs in
    ]
    # Revision 1 (the shipped captures): no offer, a 12-byte hello. Revision 2 (issue 21):
    # a 6-byte offer in clear, a 20-byte hello. The dissector reads both.
    for hello in pdus("v4-upload", 826):
        assert hello["eft.version"] == "4" and hello["eft.client_id"] == "00" * 16
        assert len(hello["eft.v4.msg1.e"]) // 2 == 32
        if "eft.v4.msg1.offer" in hello:
            assert int(hello["eft.v4.offer.revisions"], 16) & 0b100  # revision 2
    for answer in pdus("v4-upload", 1602):
        parts = ("eft.v4.msg2.e", "eft.v4.msg2.s", "eft.v4.msg2.payload")
        assert [len(answer[part]) // 2 for part in parts] in ([32, 48, 28], [32, 48, 36])
    for intent in pdus("v4-upload", 825) + pdus("v4-upload", 827):
        assert len(intent["eft.v4.msg3.s"]) // 2 == 48
        assert "eft.v4.handshake" in intent
    records = {
        (pdu["eft.code"], int(pdu["eft.v4.record.plaintext_length"]))
        for pdu in decode("v4-upload")
        if "eft.v4.record.plaintext_length" in pdu
    }
    assert {
        ("1600", 16),
        ("1605", 16),
        ("1603", 45),
        ("900", 4),
        ("1604", 8),
        ("1604", 4),
    } <= records
    # The implicit nonce: each direction of each connection counts its records from 0.
    assert field("v4-upload", "eft.v4.record.counter", 1604) == ["1", "3", "1", "3"]


def test_v3_mitm_key_shows_two_different_public_keys_for_one_client() -> None:
    [victims] = field("v3-steal-key", "eft.v3.public_key", 826, client_leg)
    [forwarded] = field("v3-steal-key", "eft.v3.public_key", 826, server_leg)
    assert victims != forwarded  # substituted in the middle
    assert codes("v3-steal-key", client_leg) == [825, 1600, 826, 1602, 828, 1603, 900, 1604]


def test_v4_mitm_key_stops_after_message_2() -> None:
    assert codes("v4-steal-key", client_leg) == [826, 1602]  # no message 3: nothing learnt
    assert codes("v4-steal-key", server_leg) == []


def test_v3_bitflip_probes_the_server_and_forwards_the_original_crc() -> None:
    received = field("v3-alter-crc", "eft.v3.cksum", 1603, server_leg)
    forwarded = field("v3-alter-crc", "eft.v3.cksum", 1603, client_leg)
    assert len(received) > 30  # the probes, each answered with the CRC of what it decrypted
    assert forwarded == [received[0]]  # the client's own CRC ...
    assert received[-1] == received[0]  # ... which the forgery, stored, also has
    assert codes("v3-alter-crc", client_leg)[-2:] == [900, 1604]
    assert codes("v3-alter-crc", server_leg)[-2:] == [900, 1604]


def test_v3_replay_uploads_the_old_file_again_on_the_left_connection() -> None:
    client = field("v3-replay", "eft.v3.cksum", 1603, client_leg)
    server = field("v3-replay", "eft.v3.cksum", 1603, server_leg)
    assert len(client) == 2 and len(server) == 3
    assert server[2] == server[0] == client[0] != client[1]  # the first upload, once more
    assert codes("v3-replay", server_leg)[-2:] == [900, 1604]  # and confirmed


def test_v3_hijack_shows_the_padding_oracle_queries() -> None:
    answers = Counter(codes("v3-hijack", server_leg))
    assert answers[902] > 50 and answers[1607] > 50 and answers[1603] >= 1
    assert set(field("v3-hijack", "eft.v3.file_name", 828)) == {"pin.txt", "probe.bin"}


@pytest.mark.parametrize("capture", ["v4-alter-crc", "v4-replay", "v4-hijack"])
def test_v4_altered_or_replayed_records_are_answered_by_a_close(capture: str) -> None:
    by_stream: dict[str, list[str]] = {}
    for pdu in pdus(capture, leg=server_leg):
        by_stream.setdefault(pdu["tcp.stream"], []).append(pdu["eft.direction"])
    # A connection to the server ends with the attacker's record, unanswered.
    assert any(directions[-1] == "client -> server" for directions in by_stream.values())


def test_v4_record_flood_shows_records_announced_and_never_sent() -> None:
    announced = [pdu for pdu in decode("v4-record-flood") if "eft.partial" in pdu]
    assert str(V4_RECORD_MAX) in {pdu["eft.payload_size"] for pdu in announced}
    assert {pdu["eft.code"] for pdu in announced} == {"828"}
    assert 1603 in codes("v4-record-flood")  # the victim's upload went through


@pytest.mark.parametrize("capture", ["v3-idle-flood", "v4-idle-flood"])
def test_idle_flood_sockets_are_silent_and_the_victim_gets_through(capture: str) -> None:
    assert not [pdu for pdu in decode(capture) if "127.0.0.3" in (pdu["ip.src"], pdu["ip.dst"])]
    assert codes(capture)[-2:] == [900, 1604]


def test_malformed_frames_get_expert_info() -> None:
    messages = " / ".join(pdu.get("_ws.expert.message", "") for pdu in decode("malformed"))
    for expected in (
        "825 needs exactly 255 bytes",
        "No NUL terminator",
        "code 999",
        "version 7",
        "825 with payload_size 4294967280",
        "handshake message 1 (-> e) with payload_size 4294967295",
        "Framing no longer trustworthy",
    ):
        assert expected in messages
    answers = [pdu for pdu in decode("malformed") if pdu["eft.direction"] == "server -> client"]
    assert {pdu["eft.code"] for pdu in answers} == {"1607"}


def test_the_heuristic_finds_eft_on_another_port() -> None:
    port_off = ("-o", "eft.tcp_port:0")
    assert codes_of(decode("v3-upload", *port_off)) == codes("v3-upload")
    assert decode("v3-upload", *port_off)[0]["eft.v3.name"] == "alice"
    assert decode("v3-upload", *port_off, "-o", "eft.heuristic:FALSE") == ()


def codes_of(found: tuple[Pdu, ...]) -> list[int]:
    return [int(pdu["eft.code"]) for pdu in found]


def experts(capture: str, name: str) -> list[Pdu]:
    """The PDUs that carry the expert info ``name`` (e.g. eft.v4.replayed)."""
    return [pdu for pdu in decode(capture) if name in pdu]


def test_replayed_records_are_flagged() -> None:
    [v3] = experts("v3-replay", "eft.v3.repeated")
    assert v3["eft.code"] == "828" and server_leg(v3)
    replayed = experts("v4-replay", "eft.v4.replayed")
    assert [pdu["eft.code"] for pdu in replayed] == ["828", "828", "900"]  # the first upload
    assert all(server_leg(pdu) for pdu in replayed)
    assert "sealed for counter 0, it fails here" in replayed[0]["_ws.expert.message"]
    assert experts("v4-upload", "eft.v4.replayed") == []
    assert experts("v3-upload", "eft.v3.repeated") == []


@pytest.mark.parametrize("capture", ["v4-alter-crc", "v4-hijack"])
def test_altered_records_are_flagged(capture: str) -> None:
    altered = experts(capture, "eft.v4.altered")
    assert altered and all(pdu["eft.code"] in ("828", "1603") for pdu in altered)
    assert experts("v4-upload", "eft.v4.altered") == []


@pytest.mark.parametrize("capture", ["v4-record-flood", "v3-replay"])
def test_a_second_pass_decodes_the_same(capture: str) -> None:
    """Wireshark dissects again when a packet is opened (tshark -2: two passes)."""
    assert decode(capture, "-2") == decode(capture)
