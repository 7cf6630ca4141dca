"""Taking a connection's reads over from StreamReader (server/eft_server/takeover.py).

Driven by hand: a StreamReader fed as asyncio feeds it, and a transport that records
what the take-over asks of it. No socket.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, cast

import pytest

from eft_server.takeover import TakenOver, take_over


class _Previous:
    """The StreamReaderProtocol a take-over passes everything but the bytes on to."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def eof_received(self) -> bool:
        self.calls.append(("eof_received", None))
        return True  # "keep the transport open": passed back to the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append(("connection_lost", exc))

    def pause_writing(self) -> None:
        self.calls.append(("pause_writing", None))

    def resume_writing(self) -> None:
        self.calls.append(("resume_writing", None))


class _Transport:
    def __init__(self, *, closing: bool = False) -> None:
        self.protocol: Any = _Previous()
        self.closing = closing
        self.reading = True

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing


class _Writer:
    def __init__(self, transport: Any) -> None:
        self.transport = transport


def _writer(transport: Any) -> asyncio.StreamWriter:
    return cast(asyncio.StreamWriter, _Writer(transport))


def _reader(data: bytes = b"") -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    if data:
        reader.feed_data(data)
    return reader


def _in_a_loop(test: Callable[[], None]) -> Callable[[], None]:
    """Run ``test`` inside an event loop: a StreamReader is made for the running one."""

    @functools.wraps(test)
    def run() -> None:
        async def body() -> None:
            test()

        asyncio.run(body())

    return run


def test_a_take_over_starts_at_the_stream_s_end_of_nothing() -> None:
    transport = _Transport()
    protocol = TakenOver(transport)
    assert (protocol.eof, protocol.error) == (False, None)
    assert transport.get_protocol() is not protocol  # not installed until take_over


@_in_a_loop
def test_take_over_installs_the_protocol_and_hands_back_the_buffered_bytes() -> None:
    transport = _Transport()
    reader = _reader(b"buffered before")
    protocol = TakenOver(transport)
    assert take_over(protocol, reader, _writer(transport)) == b"buffered before"
    assert transport.protocol is protocol
    assert (protocol.eof, protocol.error) == (False, None)
    assert cast(Any, reader)._buffer == bytearray()  # not handed out twice


@_in_a_loop
def test_take_over_after_the_end_of_the_stream_marks_it() -> None:
    transport = _Transport()
    reader = _reader(b"last")
    reader.feed_eof()
    protocol = TakenOver(transport)
    assert take_over(protocol, reader, _writer(transport)) == b"last"
    assert (protocol.eof, protocol.error) == (True, None)
    assert transport.protocol is protocol


@_in_a_loop
def test_a_closing_transport_is_left_alone_its_error_kept() -> None:
    lost = ConnectionResetError("reset by peer")
    for transport, reader in (
        (_Transport(closing=True), _reader(b"tail")),
        (_Transport(), _reader(b"tail")),
    ):
        if not transport.closing:
            reader.set_exception(lost)
        previous = transport.protocol
        protocol = TakenOver(transport)
        assert take_over(protocol, reader, _writer(transport)) == b"tail"
        assert protocol.eof is True
        assert protocol.error is (None if transport.closing else lost)
        assert transport.protocol is previous  # not installed on a closed transport


class _Bare:
    """A transport without the calls a take-over needs."""

    def get_protocol(self) -> Any:
        return None


@_in_a_loop
def test_a_transport_that_cannot_be_taken_over_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"^cannot receive straight from a _Bare$"):
        take_over(TakenOver(_Bare()), _reader(), _writer(_Bare()))
    unbuffered = _reader()
    cast(Any, unbuffered)._buffer = b""  # a StreamReader that keeps no bytearray
    transport = _Transport()
    with pytest.raises(RuntimeError, match=r"^cannot receive straight from a _Transport$"):
        take_over(TakenOver(transport), cast(Any, object()), _writer(transport))  # none
    transport = _Transport()
    with pytest.raises(RuntimeError, match=r"^cannot receive straight from a _Transport$"):
        take_over(TakenOver(transport), unbuffered, _writer(transport))
    for missing in ("set_protocol", "is_reading", "pause_reading", "resume_reading"):
        broken = type("Partial", (_Transport,), {missing: property()})()  # unreadable
        with pytest.raises(RuntimeError, match=r"^cannot receive straight from a Partial$"):
            take_over(TakenOver(broken), _reader(), _writer(broken))


def test_the_end_of_the_stream_is_marked_passed_on_and_wakes_the_wait() -> None:
    async def scenario() -> tuple[bool, TakenOver, _Previous, bool | None]:
        transport = _Transport()
        protocol = TakenOver(transport)
        answers: list[bool | None] = []
        asyncio.get_running_loop().call_soon(lambda: answers.append(protocol.eof_received()))
        woken = await protocol._woken(3600)
        return woken, protocol, transport.protocol, answers[0]

    woken, protocol, previous, answer = asyncio.run(scenario())
    assert woken is True
    assert protocol.eof is True
    assert previous.calls == [("eof_received", None)]
    assert answer is True  # the StreamReaderProtocol's answer, passed back


def test_a_connection_loss_keeps_the_first_error_and_is_passed_on() -> None:
    async def scenario() -> tuple[bool, TakenOver, _Previous]:
        transport = _Transport()
        protocol = TakenOver(transport)
        first, second = ConnectionResetError("first"), OSError("second")
        loop = asyncio.get_running_loop()
        loop.call_soon(protocol.connection_lost, first)
        woken = await protocol._woken(3600)
        protocol.connection_lost(second)
        assert protocol.error is first
        return woken, protocol, transport.protocol

    woken, protocol, previous = asyncio.run(scenario())
    assert woken is True
    assert protocol.eof is True
    assert [call for call, _ in previous.calls] == ["connection_lost", "connection_lost"]
    assert [type(exc) for _, exc in previous.calls] == [ConnectionResetError, OSError]


def test_a_clean_connection_loss_sets_no_error_and_the_driver_s_stays() -> None:
    transport = _Transport()
    protocol = TakenOver(transport)
    protocol.connection_lost(None)
    assert (protocol.eof, protocol.error) == (True, None)
    assert transport.protocol.calls == [("connection_lost", None)]
    driver_error = RuntimeError("the driver's")
    again = TakenOver(_Transport())
    again.error = driver_error
    again.connection_lost(ConnectionResetError("later"))
    assert again.error is driver_error


def test_write_flow_control_is_passed_on() -> None:
    transport = _Transport()
    protocol = TakenOver(transport)
    protocol.pause_writing()
    protocol.resume_writing()
    assert [call for call, _ in transport.protocol.calls] == ["pause_writing", "resume_writing"]


def test_a_wait_with_nothing_coming_runs_out_and_a_later_wake_is_harmless() -> None:
    async def scenario() -> tuple[bool, bool]:
        protocol = TakenOver(_Transport())
        quiet = await protocol._woken(0)
        protocol.eof_received()  # no one waiting: nothing to wake
        loop = asyncio.get_running_loop()
        loop.call_soon(protocol.eof_received)
        loop.call_soon(protocol.eof_received)  # woken twice before it runs: once
        woken = await protocol._woken(3600)
        return quiet, woken

    assert asyncio.run(scenario()) == (False, True)
