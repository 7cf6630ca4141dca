"""``eft-check server`` against our server and against a server with each known mistake.

Against a conforming server every check passes; against a deviant one, the mistake it
makes is the only one named, with the status it deserves (deviation: our client copes;
fail: it does not), and every check that did not pass names it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eft_check.report import Report, Status
from eft_check.rules import SERVER_CHECKS
from eft_check.server_checks import ServerChecker
from tests.check.deviant_server import DeviantServer, Quirks
from tests.support.processes import ServerProcess


def check(port: int, split_gap: float = 0.02) -> Report:
    return ServerChecker(("127.0.0.1", port), timeout=10, split_gap=split_gap).run()


def assert_only(report: Report, mistake: str, status: Status) -> None:
    failed = [r for r in report.results if r.status is not Status.PASS]
    assert failed, "the mistake went unnoticed"
    for result in failed:
        assert result.mistakes == [mistake], (result.rule.id, result.mistakes, result.notes)
        assert result.status is status, (result.rule.id, result.status, result.notes)
    assert report.mistakes() == {mistake}


def test_our_server_passes_every_check(server: ServerProcess) -> None:
    report = check(server.port)
    assert [r.rule.id for r in report.results] == list(SERVER_CHECKS)
    assert report.conforms, [r.as_json() for r in report.results if r.status is not Status.PASS]


def test_our_server_with_answer_901_is_a_tolerated_deviation(
    server_factory: Callable[..., ServerProcess],
) -> None:
    report = check(server_factory("--answer-901").port)
    assert_only(report, "answers-901", Status.DEVIATION)
    assert {r.rule.id for r in report.results if r.status is not Status.PASS} == {
        "crc-901",
        "crc-902",
    }


def test_the_deviant_server_without_quirks_conforms() -> None:
    with DeviantServer() as server:
        report = check(server.port)
    assert report.conforms, [r.as_json() for r in report.results if r.status is not Status.PASS]
    assert server.errors == []


@pytest.mark.parametrize(
    ("quirk", "mistake", "status"),
    [
        ("one_recv", "one-recv", Status.DEVIATION),
        ("per_packet_cbc", "per-packet-cbc", Status.FAIL),
        ("swapped_fields", "swapped-packet-fields", Status.FAIL),
        ("plaintext_sizes", "plaintext-sizes", Status.DEVIATION),
        ("empty_1604", "empty-1604", Status.FAIL),
        ("empty_1606", "empty-1606", Status.DEVIATION),
        ("ack_before_1603", "1604-before-1603", Status.FAIL),
        ("answer_each_828", "answers-each-828", Status.FAIL),
        ("answer_901", "answers-901", Status.DEVIATION),
        ("crc32", "crc32-not-cksum", Status.FAIL),
        ("refuse_paths", "refuses-path-name", Status.DEVIATION),
        ("short_1603_size", "payload-size-mismatch", Status.FAIL),
    ],
)
def test_each_server_mistake_is_named_and_nothing_else(
    quirk: str, mistake: str, status: Status
) -> None:
    with DeviantServer(Quirks(**{quirk: True})) as server:
        # Pieces far apart: the one-recv server must not find a whole header by luck.
        report = check(server.port, split_gap=0.25 if quirk == "one_recv" else 0.02)
    assert_only(report, mistake, status)
    assert server.errors == []
