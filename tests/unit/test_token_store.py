"""The invitation tokens' store: hashes only, uses, expiry, name patterns, revocation,
kept across a restart (docs/OPERATIONS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eft_server.tokens import TokenStore, parse_duration


def test_durations() -> None:
    assert [parse_duration(t) for t in ("0", "90", "30m", "12h", "7d", "1w2d")] == [
        0,
        90,
        1800,
        43200,
        604800,
        777600,
    ]
    for bad in ("", "7x", "d", "1h30", "-1m"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_a_token_through_its_life_and_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = TokenStore(path)
    text, token = store.create(100.0, uses=2, lifetime=50, pattern="team-*")
    assert text.startswith("eft_") and len(text) == 36 and text not in path.read_text()
    assert store.check(b"", "team-a", 101.0)[0] == "no_token"
    assert store.check(b"eft_forged", "team-a", 101.0)[0] == "bad_token"
    assert store.check(text.encode(), "bob", 101.0)[0] == "token_name"
    reason, found = store.check(text.encode(), "team-a", 101.0)
    assert reason is None and found == token
    store.spend(token, "team-a")
    again = TokenStore(path)  # what a restarted server reads
    reason, found = again.check(text.encode(), "team-b", 120.0)
    assert reason is None and found is not None and found.used_by == ["team-a"]
    again.spend(found, "team-b")
    assert again.check(text.encode(), "team-c", 120.0)[0] == "token_used"
    assert again.check(text.encode(), "team-c", 150.0)[0] == "token_expired"
    _, other = again.create(101.0)
    assert again.revoke(other.id) is not None and again.revoke("nope") is None
    assert [t.state(120.0) for t in TokenStore(path).all()] == ["used up", "revoked"]
    assert path.stat().st_mode & 0o777 == 0o600
