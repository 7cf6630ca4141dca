"""Server logs: JSON lines with their connection context, and never any key material."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from eft_protocol import crypto
from tests.support.processes import ClientDir, ServerProcess, write_random_file
from tests.support.raw_client import RawClient


def test_every_line_is_json_with_context_and_no_key_material(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    raw = RawClient(server.address)
    session = raw.handshake("keyholder")
    secret = b"the plaintext of a file nobody should find in a log"
    raw.send_file("secret.txt", secret)
    aes_key = session._aes_key
    assert aes_key is not None and session.identity is not None
    raw.close()

    client = client_factory("other", server.address)
    assert client.run([write_random_file(tmp_path / "f.bin", 5000)]).returncode == 0
    private_key = crypto.import_private_key(
        "".join((client.path / "me.info").read_text().splitlines()[2:])
    )
    server.stop()

    text = server.current_log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    records = server.logs()
    assert len(records) == len(lines), "every line must be one JSON object"
    for record in records:
        assert {"event", "level", "timestamp"} <= set(record)
        if record["event"] in ("request", "transfer", "request_rejected", "connection_closed"):
            assert {"connection", "peer"} <= set(record), record
        # Once a connection knows its client (after 1600 or 1605), every line names it.
        if record["event"] == "transfer" or record.get("code") in (826, 900, 901, 902):
            assert len(record.get("client_id", "")) == 32, record

    forbidden = {
        "AES key (hex)": aes_key.hex(),
        "AES key (base64)": base64.b64encode(aes_key).decode(),
        "private key (base64 PKCS#8)": crypto.export_private_key(private_key)[:40],
        "private key (hex d)": format(private_key.d, "x")[:40],
        "RSA private key of the raw client": crypto.export_private_key(
            session.identity.private_key
        )[:40],
        "file plaintext": secret.decode(),
    }
    for what, needle in forbidden.items():
        assert needle.lower() not in text.lower(), f"the log contains the {what}"


def test_normal_sessions_of_both_versions_end_without_a_lost_connection(
    server: ServerProcess, client_factory: Callable[..., ClientDir], tmp_path: Path
) -> None:
    """One event per outcome, keys of one type: a session that ends as every session
    does is no "connection_lost"; a transfer that did not resume says nothing of resuming;
    "error" is always text (a number sent in 1607 is "error_code")."""
    for protocol in (3, 4):
        client = client_factory(f"tidy{protocol}", server.address)
        client.protocol = protocol
        source = write_random_file(tmp_path / f"t{protocol}.bin", 70_000, seed=protocol)
        assert client.run([source]).returncode == 0
    server.stop()
    records = server.logs()
    events = [r["event"] for r in records]
    assert "connection_lost" not in events, [r for r in records if r["event"] == "connection_lost"]
    assert events.count("connection_closed") == events.count("connection_opened") >= 2
    transfers = [r for r in records if r["event"] == "transfer"]
    # Version 4 streams a file of one record: its connection's one line counts it.
    assert {r["version"] for r in transfers} == {3}
    streamed = [r for r in records if r["event"] == "files_streamed"]
    assert [(r["files"], r["bytes"]) for r in streamed] == [(1, 70_000)]
    assert not [r for r in transfers if "resumed_from_chunk" in r]
    for record in records:
        assert isinstance(record.get("error", ""), str), record
        assert isinstance(record.get("error_code", 0), int), record
