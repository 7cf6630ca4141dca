"""Every server metric, defined once, on a registry the caller owns (tests get fresh ones).

Labels come from small fixed sets only: request and response codes, outcomes, error
reasons. Never a client id, a name, a file name or an address.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from eft_protocol import __version__, errors
from eft_protocol.notices import (
    TRANSFER_OUTCOMES,
    ClientReconnected,
    ClientRegistered,
    ClosedSilently,
    CookieSent,
    HandshakeRateLimited,
    HelloAnswered,
    NameRefused,
    Notice,
    PackStored,
    ReconnectRefused,
    Transfer,
)
from eft_protocol.v4.server import CLOSE_REASONS

from .control import ACTIONS as ADMIN_ACTIONS
from .partial_uploads import DROP_REASONS as PARTIAL_DROP_REASONS
from .registration_policy import REFUSAL_REASONS

# Every counter would otherwise have a "_created" twin (88 series nobody reads).
disable_created_metrics()  # type: ignore[no-untyped-call]

VERSIONS = ("3", "4")
#: How version 4 answered a message 1: with its DH (message 2) or a cookie reply (none).
HANDSHAKE_REPLY_KINDS = ("server_hello", "cookie")
#: The per-source-address limits on unauthenticated work (docs/SECURITY.md, EFT-15).
ADDRESS_LIMITS = ("handshakes_in_flight", "handshake_rate")

#: From a 1 ms key exchange to a 10-minute multi-GiB upload.
DURATION_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
)
#: Empty to 4 GiB, by powers of 4.
SIZE_BUCKETS = tuple(float(4**k) for k in range(0, 17))


class DiskCollector(Collector):
    """The data directory's file system, read at each scrape (a full disk is the one
    storage failure an operator can see coming)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stat = os.statvfs(self.data_dir)
        except OSError:
            return  # not made yet, or gone: no figure rather than a wrong one
        size = GaugeMetricFamily(
            "eft_data_dir_size_bytes", "Size of the file system that holds --data-dir."
        )
        size.add_metric([], stat.f_frsize * stat.f_blocks)
        free = GaugeMetricFamily(
            "eft_data_dir_free_bytes",
            "Bytes the server may still write there (what an unprivileged user may use).",
        )
        free.add_metric([], stat.f_frsize * stat.f_bavail)
        yield size
        yield free


PROXY_HEADER_RESULTS = ("proxied", "health_check", "invalid", "unsupported", "timeout", "left")


class ServerMetrics:
    def __init__(
        self, registry: CollectorRegistry | None = None, data_dir: Path | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        if data_dir is not None:
            r.register(DiskCollector(data_dir))
        Info("eft_build", "The running release and Python.", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.connections_active = Gauge(
            "eft_connections_active", "Client connections open now.", registry=r
        )
        self.connections = Counter(
            "eft_connections",
            "Client connections accepted, by protocol version.",
            ["version"],
            registry=r,
        )
        self.connections_refused = Counter(
            "eft_connections_refused",
            "Connections closed at once: the server was at --max-connections.",
            registry=r,
        )
        self.connections_shed = Counter(
            "eft_connections_shed",
            "Connections closed to admit a newcomer at --max-connections: the oldest not "
            "yet authenticated, from the address holding the most of them.",
            ["reason"],
            registry=r,
        )
        self.handshake_replies = Counter(
            "eft_handshake_replies",
            "Version-4 message 1s answered: server_hello (message 2, the server's DH) or "
            "cookie (a cookie reply under load, no DH).",
            ["kind"],
            registry=r,
        )
        self.address_refusals = Counter(
            "eft_address_limit_refusals",
            "Unauthenticated work refused for its source address: handshakes_in_flight "
            "(--max-handshakes-per-address, at accept), handshake_rate "
            "(--handshake-rate-per-address, version 4's message 1).",
            ["limit"],
            registry=r,
        )
        self.proxy_headers = Counter(
            "eft_proxy_headers",
            "Connections on --proxy-port by their PROXY v2 header: proxied (a client's "
            "address), health_check (LOCAL, answered), invalid, unsupported (not TCP), "
            "timeout or left (no whole header): the last four are closed.",
            ["result"],
            registry=r,
        )
        self.timeouts = Counter(
            "eft_connection_timeouts",
            "Connections closed for silence: idle (between requests), read (inside a "
            "request), handshake (no key exchange in time).",
            ["kind"],
            registry=r,
        )
        self.requests = Counter(
            "eft_requests",
            "Requests received, by code (828: per packet or record) and protocol version.",
            ["code", "version"],
            registry=r,
        )
        self.responses = Counter(
            "eft_responses",
            "Responses sent, by code and protocol version.",
            ["code", "version"],
            registry=r,
        )
        self.registrations = Counter(
            "eft_registrations", "825 requests, by outcome.", ["outcome"], registry=r
        )
        self.registrations_refused = Counter(
            "eft_registrations_refused",
            "New names refused by the registration policy (both versions), by reason.",
            ["reason"],
            registry=r,
        )
        self.admin_actions = Counter(
            "eft_admin_actions",
            "eft-admin actions this server carried out (its control socket), by action.",
            ["action"],
            registry=r,
        )
        self.reconnects = Counter(
            "eft_reconnects", "827 requests, by outcome.", ["outcome"], registry=r
        )
        self.transfers = Counter(
            "eft_transfers",
            "File attempts, by outcome: received (1603 sent), verified (900), retried "
            "(901), gave_up (902), aborted (connection lost), error (rejected); and the "
            "protocol version.",
            ["outcome", "version"],
            registry=r,
        )
        self.received_ciphertext = Counter(
            "eft_received_ciphertext_bytes",
            "File content bytes received (v3: 828 content; v4: sealed records), by version.",
            ["version"],
            registry=r,
        )
        self.stored_plaintext = Counter(
            "eft_stored_plaintext_bytes",
            "Plaintext bytes of verified, stored files, by protocol version.",
            ["version"],
            registry=r,
        )
        self.transfer_duration = Histogram(
            "eft_transfer_duration_seconds",
            "From a file's first packet to the client's verdict (900 or 902), by version.",
            ["outcome", "version"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.file_size = Histogram(
            "eft_file_size_bytes",
            "Plaintext size of verified files.",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.crc_mismatches = Counter(
            "eft_crc_mismatches",
            "Attempts whose CRC the client found wrong (901 or 902).",
            registry=r,
        )
        self.protocol_errors = Counter(
            "eft_protocol_errors",
            "Requests refused (v3) or connections closed (v4), by reason and version.",
            ["reason", "version"],
            registry=r,
        )
        self.registered_clients = Gauge(
            "eft_registered_clients", "Clients the registry knows.", registry=r
        )
        self.partial_uploads = Gauge(
            "eft_partial_uploads", "Unfinished version-4 uploads kept on disk.", registry=r
        )
        self.partial_upload_bytes = Gauge(
            "eft_partial_upload_bytes", "Bytes of unfinished version-4 uploads kept.", registry=r
        )
        self.partial_uploads_dropped = Counter(
            "eft_partial_uploads_dropped",
            "Unfinished version-4 uploads dropped by a quota, by the limit they broke.",
            ["reason"],
            registry=r,
        )
        self.partial_upload_bytes_dropped = Counter(
            "eft_partial_upload_dropped_bytes",
            "Bytes of unfinished version-4 uploads dropped by a quota, by the limit.",
            ["reason"],
            registry=r,
        )
        for reason in REFUSAL_REASONS:
            self.registrations_refused.labels(reason)
        for action in ADMIN_ACTIONS:
            self.admin_actions.labels(action)
        for reason in PARTIAL_DROP_REASONS:
            self.partial_uploads_dropped.labels(reason)
            self.partial_upload_bytes_dropped.labels(reason)
        for version in VERSIONS:
            self.connections.labels(version)
            self.received_ciphertext.labels(version)
            self.stored_plaintext.labels(version)
            for outcome in TRANSFER_OUTCOMES:
                self.transfers.labels(outcome, version)
        for kind in ("idle", "read", "handshake", "record_rate"):
            self.timeouts.labels(kind)
        # Every labelled series exists from the start at 0: a dashboard query of a
        # counter nobody has touched yet would otherwise show no data at all.
        self.connections_shed.labels("unauthenticated")
        for kind in HANDSHAKE_REPLY_KINDS:
            self.handshake_replies.labels(kind)
        for limit in ADDRESS_LIMITS:
            self.address_refusals.labels(limit)
        for result in PROXY_HEADER_RESULTS:
            self.proxy_headers.labels(result)
        for reason in sorted({error.reason for error in errors.SERVER_REFUSALS}):
            self.protocol_errors.labels(reason, "3")
        for reason in sorted(CLOSE_REASONS):  # why version-4 connections are closed
            self.protocol_errors.labels(reason, "4")
        #: The counter each kind of notice adds one to, keyed by the notice's type (the
        #: type checker catches a rename); ``Transfer`` and ``ClosedSilently`` carry
        #: their labels in their fields (see ``notice``).
        self.notice_counters: dict[type[Notice], Any] = {
            ClientRegistered: self.registrations.labels("registered"),
            NameRefused: self.registrations.labels("refused"),
            ClientReconnected: self.reconnects.labels("approved"),
            ReconnectRefused: self.reconnects.labels("denied"),
            HelloAnswered: self.handshake_replies.labels("server_hello"),
            CookieSent: self.handshake_replies.labels("cookie"),
            HandshakeRateLimited: self.address_refusals.labels("handshake_rate"),
        }
        # Children of the counters every connection touches, looked up once: a
        # ``labels()`` call costs a lock and a dict walk per connection (issue 18).
        self.connections_by_version = {v: self.connections.labels(v) for v in ("3", "4")}
        self._responses: dict[tuple[int, int], Any] = {}
        # The same, server-wide, for what every session counts several times (about 14
        # ``labels()`` a session before, most of them per connection: issue 22).
        self._requests: dict[tuple[str, str], Any] = {}
        self._received = {v: self.received_ciphertext.labels(v) for v in ("3", "4")}
        self._transfers: dict[tuple[str, str], Any] = {}
        self._durations: dict[tuple[str, str], Any] = {}
        self._stored = {v: self.stored_plaintext.labels(v) for v in ("3", "4")}

    def response(self, code: int, version: int) -> Any:
        """The ``eft_responses_total`` child of a response code and version."""
        child = self._responses.get((code, version))
        if child is None:
            child = self._responses[(code, version)] = self.responses.labels(
                str(code), str(version)
            )
        return child

    def request(self, code: str, version: str) -> Any:
        """The ``eft_requests_total`` child of a request code (or "unknown") and version."""
        child = self._requests.get((code, version))
        if child is None:
            child = self._requests[(code, version)] = self.requests.labels(code, version)
        return child

    def received(self, version: str) -> Any:
        """The ``eft_received_ciphertext_bytes_total`` child of a version."""
        return self._received[version]

    def notice(self, notice: Notice) -> None:
        """Count what a session noticed, whatever its version."""
        counter = self.notice_counters.get(type(notice))
        if counter is not None:
            counter.inc()
        elif isinstance(notice, Transfer):
            self.transfer(notice.fields)
        elif isinstance(notice, PackStored):
            self.files_packed(notice.fields)
        elif isinstance(notice, ClosedSilently):
            self.protocol_errors.labels(notice.reason, "4").inc()

    def _transfer_children(self, outcome: str, version: str) -> tuple[Any, Any]:
        """The transfers counter and duration histogram of these labels, looked up once
        (a labels() call per file made the small files' hot path slower)."""
        key = (outcome, version)
        counter = self._transfers.get(key)
        if counter is None:
            counter = self._transfers[key] = self.transfers.labels(outcome, version)
        duration = self._durations.get(key)
        if duration is None:
            duration = self._durations[key] = self.transfer_duration.labels(*key)
        return counter, duration

    def transfer(self, fields: dict[str, Any]) -> None:
        outcome = fields["outcome"]
        version = str(fields.get("version", 3))
        counter, duration = self._transfer_children(outcome, version)
        counter.inc()
        if outcome in ("retried", "gave_up"):
            self.crc_mismatches.inc()
        if outcome in ("verified", "gave_up") and "duration" in fields:
            duration.observe(fields["duration"])
        if outcome == "verified":
            self._stored[version].inc(fields["bytes"])
            self.file_size.observe(fields["bytes"])

    def files_packed(self, fields: dict[str, Any]) -> None:
        """A 904's files, counted as the transfers they are once their group is durable:
        each stored file a verified one, each differing digest a retry."""
        if fields["retried"]:
            self._transfer_children("retried", "4")[0].inc(fields["retried"])
            self.crc_mismatches.inc(fields["retried"])
        if not fields["files"]:
            return
        counter, duration = self._transfer_children("verified", "4")
        counter.inc(fields["files"])
        self._stored["4"].inc(fields["bytes"])
        for size in fields["sizes"]:
            self.file_size.observe(size)
            duration.observe(fields["duration"])  # the pack's: its files came together

    def partial_upload_dropped(self, reason: str, size: int) -> None:
        self.partial_uploads_dropped.labels(reason).inc()
        self.partial_upload_bytes_dropped.labels(reason).inc(size)

    def watch_partial_uploads(self, usage: Callable[[], tuple[int, int]]) -> None:
        """Read the unfinished uploads' count and bytes at each scrape."""
        self.partial_uploads.set_function(lambda: usage()[0])
        self.partial_upload_bytes.set_function(lambda: usage()[1])

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics endpoint in a thread; returns the port it listens on."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        bound: int = server.server_address[1]
        return bound
