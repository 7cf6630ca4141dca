"""Metrics count the sessions' notices by type: each kind lands on its labelled series."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from eft_protocol import notices
from eft_server.metrics import ServerMetrics


def _value(metrics: ServerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.mark.parametrize(
    ("notice", "series", "labels"),
    [
        (notices.ClientRegistered(), "eft_registrations_total", {"outcome": "registered"}),
        (notices.NameRefused(), "eft_registrations_total", {"outcome": "refused"}),
        (notices.ClientReconnected(), "eft_reconnects_total", {"outcome": "approved"}),
        (notices.ReconnectRefused(), "eft_reconnects_total", {"outcome": "denied"}),
        (
            notices.ClosedSilently({"reason": "bad_record"}),
            "eft_protocol_errors_total",
            {"reason": "bad_record", "version": "4"},
        ),
        (
            notices.Transfer({"outcome": "verified", "bytes": 10, "version": 4, "duration": 1}),
            "eft_transfers_total",
            {"outcome": "verified", "version": "4"},
        ),
    ],
)
def test_each_counted_notice_moves_its_series_by_one(
    notice: notices.Notice, series: str, labels: dict[str, str]
) -> None:
    metrics = ServerMetrics(CollectorRegistry())
    before = _value(metrics, series, **labels)
    metrics.notice(notice)
    assert _value(metrics, series, **labels) == before + 1


def test_a_notice_with_no_metric_counts_nothing() -> None:
    metrics = ServerMetrics(CollectorRegistry())
    metrics.notice(notices.KeyExchanged())
    metrics.notice(notices.UploadResumed({"chunk": 2, "of": 3}))
    assert _value(metrics, "eft_registrations_total", outcome="registered") == 0
