"""The client's retry rule, driven by a fake clock: a window after each break, not a count."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from eft_client.errors import CannotConnect, ConnectionLost
from eft_client.progress import Reporter
from eft_client.reconnect import with_reconnects
from eft_client.settings import ClientSettings

SETTINGS = ClientSettings("127.0.0.1", 1, "alice", Path("."), retry_for=60.0)


class Recorder(Reporter):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def event(self, kind: str, **fields: Any) -> None:
        self.events.append({"event": kind, **fields})


class Script:
    """connect_once that raises the scripted exceptions, then succeeds; the clock moves
    only when the rule sleeps. Each ``Verified`` outcome is a connection that verified a
    file and then broke."""

    def __init__(self, *outcomes: Exception) -> None:
        self.outcomes = list(outcomes)
        self.now = 1000.0
        self.calls = 0
        self.verified = 0
        self.slept: list[float] = []

    async def connect_once(self) -> None:
        self.calls += 1
        if self.outcomes:
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, Verified):
                self.verified += 1
            raise outcome

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Verified(ConnectionLost):
    """A break after the connection had verified a file: progress."""


def run(script: Script, settings: ClientSettings = SETTINGS) -> list[dict[str, Any]]:
    reporter = Recorder()
    asyncio.run(
        with_reconnects(
            settings,
            reporter,
            script.connect_once,
            progress=lambda: script.verified,
            clock=script.clock,
            sleep=script.sleep,
        )
    )
    return reporter.events


def test_a_server_down_for_half_a_minute_is_waited_for() -> None:
    refused = [CannotConnect("refused") for _ in range(9)]
    script = Script(ConnectionLost("reset"), *refused)
    events = run(script)
    assert script.calls == 11  # the broken one, nine refused, then the one that worked
    assert [e["retry"] for e in events] == list(range(1, 11))
    nominal = 0.5 + 1 + 2 + 4 + 5 * 6  # doubling from 0.5 s, capped at 5 s
    assert nominal / 2 <= script.now - 1000 <= nominal < 60, script.slept  # jitter: x0.5-1


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    script = Script(ConnectionLost("reset"), *[CannotConnect("refused") for _ in range(7)])
    run(script)
    for attempt, slept in enumerate(script.slept, start=1):
        nominal = min(5.0, 0.5 * 2 ** (attempt - 1))
        assert nominal / 2 <= slept <= nominal


def test_it_gives_up_when_the_window_has_passed() -> None:
    script = Script(ConnectionLost("reset"), *[CannotConnect("refused") for _ in range(100)])
    with pytest.raises(CannotConnect):
        run(script)
    assert script.now - 1000 == pytest.approx(60.0)  # the last wait ends at the window
    assert script.calls < 30


def test_a_break_after_progress_opens_a_new_window() -> None:
    settings = replace(SETTINGS, retry_for=10.0)
    script = Script(*[Verified("reset") for _ in range(30)])
    run(script, settings)  # 30 breaks, far more than 10 s in all: each one had a window
    assert script.calls == 31


def test_a_server_that_breaks_every_connection_is_given_up_after_one_window() -> None:
    """It accepts, and hangs up before any file is stored: connecting again is no progress."""
    script = Script(*[ConnectionLost("closed") for _ in range(1000)])
    with pytest.raises(ConnectionLost):
        run(script)
    assert script.now - 1000 == pytest.approx(60.0)


def test_the_first_connection_failing_is_said_at_once() -> None:
    script = Script(CannotConnect("refused"))
    with pytest.raises(CannotConnect):
        run(script)
    assert script.slept == []


def test_a_count_given_stops_before_the_window() -> None:
    script = Script(ConnectionLost("reset"), *[CannotConnect("refused") for _ in range(10)])
    with pytest.raises(CannotConnect):
        run(script, replace(SETTINGS, retries=2))
    assert script.calls == 3


def test_no_window_means_no_retry() -> None:
    script = Script(ConnectionLost("reset"))
    with pytest.raises(ConnectionLost):
        run(script, replace(SETTINGS, retry_for=0.0))
    assert script.calls == 1
