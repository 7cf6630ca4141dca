"""The shared vocabulary both versions speak: notices by type, refusal reasons by class."""

from __future__ import annotations

import inspect

from eft_protocol import errors, notices


def test_every_server_side_error_is_a_listed_refusal() -> None:
    """The metric's label set is the list, so a new error class must join it."""
    server_side = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ProtocolError) and not issubclass(cls, errors.ResponseError)
    }
    assert server_side == set(errors.SERVER_REFUSALS)


def test_each_notice_names_its_own_log_event() -> None:
    kinds = [
        cls
        for _, cls in inspect.getmembers(notices, inspect.isclass)
        if issubclass(cls, notices.Notice) and cls not in (notices.Notice, notices.QuietTransfer)
    ]
    events = [cls.event for cls in kinds]
    assert len(set(events)) == len(events) == len(notices.__all__) - 2
    # The one kind that shares an event: the same line, at debug level.
    assert notices.QuietTransfer.event == notices.Transfer.event
    assert notices.QuietTransfer.quiet and not notices.Transfer.quiet
    assert notices.Transfer({"outcome": "verified"}).outcome == "verified"
