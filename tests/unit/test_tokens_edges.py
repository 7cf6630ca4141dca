"""Invitation tokens at their edges: the instant a token expires, its last use, name
patterns matched case-sensitively, what ``token list`` shows, the file a restart reads
(hashes only, private, replaced atomically) and each usage error's message."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from eft_server import tokens
from eft_server.tokens import Token, TokenStore, parse_duration, token_hash


def test_each_unit_and_a_sum_of_them() -> None:
    assert [parse_duration(t) for t in ("1s", "1m", "1h", "1d", "1w")] == [
        1,
        60,
        3600,
        86400,
        604800,
    ]
    assert parse_duration("1w1d1h1m1s") == 604800 + 86400 + 3600 + 60 + 1
    assert parse_duration("10m") == 600 and parse_duration("007") == 7


@pytest.mark.parametrize("text", ["", "m", "5", "1h 30m", "30mm", "x30m", "30m!"])
def test_anything_but_numbers_and_units_is_refused_with_the_text(text: str) -> None:
    if text == "5":
        assert parse_duration(text) == 5
        return
    with pytest.raises(ValueError) as refused:
        parse_duration(text)
    assert str(refused.value) == f"{text!r} is not a duration such as 30m, 12h, 7d"


def test_the_hash_is_sha256_in_hex() -> None:
    assert token_hash(b"eft_x") == hashlib.sha256(b"eft_x").hexdigest()


def _token(**changes: object) -> Token:
    fields: dict[str, object] = {"id": "abc", "sha256": "f" * 64, "created_at": 0.0, "uses": 2}
    fields.update(changes)
    return Token(**fields)  # type: ignore[arg-type]


def test_a_token_expires_at_its_instant_not_after() -> None:
    token = _token(expires_at=100.0)
    assert token.refusal("a", 99.999) is None and token.state(99.999) == "valid"
    assert token.refusal("a", 100.0) == "token_expired" and token.state(100.0) == "expired"
    assert _token().refusal("a", 1e12) is None, "no expiry: never expires"


def test_the_last_use_admits_and_then_none_does() -> None:
    assert _token(used=1).refusal("a", 0) is None
    assert _token(used=1).state(0) == "valid"
    assert _token(used=2).refusal("a", 0) == "token_used"
    assert _token(used=2).state(0) == "used up"


def test_reasons_and_states_in_their_order() -> None:
    everything = _token(used=2, expires_at=1.0, revoked=True, name_pattern="x")
    assert everything.refusal("y", 5.0) == "token_revoked" and everything.state(5.0) == "revoked"
    expired_and_used = _token(used=2, expires_at=1.0, name_pattern="x")
    assert expired_and_used.refusal("y", 5.0) == "token_expired"
    assert expired_and_used.state(5.0) == "expired"
    assert _token(used=2, name_pattern="x").refusal("y", 5.0) == "token_used"


def test_the_name_pattern_is_a_case_sensitive_glob() -> None:
    token = _token(name_pattern="team-*")
    assert token.refusal("team-a", 0) is None
    assert token.refusal("Team-a", 0) == "token_name"
    assert token.refusal("my-team-a", 0) == "token_name"
    assert _token(name_pattern="bob").refusal("bob", 0) is None


def test_the_listing_shows_the_id_never_the_hash() -> None:
    token = _token(used=1, expires_at=50.0, name_pattern="lab-*", used_by=["lab-1"])
    shown = token.describe(10.0)
    assert shown == {
        "id": "abc",
        "state": "valid",
        "uses": 2,
        "used": 1,
        "expires_at": 50.0,
        "name_pattern": "lab-*",
        "created_at": 0.0,
        "used_by": ["lab-1"],
    }
    assert token.sha256 not in json.dumps(shown)
    shown["used_by"].append("changed")
    assert token.used_by == ["lab-1"], "a copy: the listing cannot change the token"


def test_a_new_token_s_text_id_and_record(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / tokens.TOKENS_FILE)
    text, token = store.create(1000.0, uses=3, lifetime=60, pattern="ops-?")
    assert text.startswith("eft_") and text == text.lower()
    raw = base64.b32decode(text.removeprefix("eft_").upper())
    assert len(raw) == 20, "160 random bits"
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert token == Token(digest[:12], digest, 1000.0, 3, 0, 1060.0, "ops-?", False, [])
    assert store.find(token.id) == token and store.find("0" * 12) is None
    assert len(store) == 1
    _, lasting = store.create(1000.0)
    assert lasting.uses == 1 and lasting.expires_at is None and lasting.name_pattern is None
    assert len(store) == 2
    other, _ = store.create(1000.0)
    assert other != text, "drawn afresh"


def test_a_token_admits_at_least_one_registration(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / tokens.TOKENS_FILE)
    for uses in (0, -1):
        with pytest.raises(ValueError) as refused:
            store.create(0.0, uses=uses)
        assert str(refused.value) == ("a token admits at least one registration (--uses 1 or more)")
    assert store.create(0.0, uses=1)[1].uses == 1
    assert len(store) == 1


def test_check_and_spend_go_by_the_hash(tmp_path: Path) -> None:
    store = TokenStore(None)  # --ephemeral: nothing written
    text, token = store.create(0.0, uses=2)
    assert store.check(b"", "a", 0.0) == ("no_token", None)
    assert store.check(b"eft_other", "a", 0.0) == ("bad_token", None)
    assert store.check(text.encode(), "a", 0.0) == (None, token)
    store.spend(token, "a")
    store.spend(token, "b")  # the stale record: the current one is counted from
    reason, spent = store.check(text.encode(), "c", 0.0)
    assert reason == "token_used" and spent is not None
    assert (spent.used, spent.used_by) == (2, ["a", "b"])
    assert list(tmp_path.iterdir()) == []


def test_revoking_returns_the_token_as_it_was_and_lists_it_revoked(tmp_path: Path) -> None:
    path = tmp_path / tokens.TOKENS_FILE
    store = TokenStore(path)
    text, token = store.create(5.0)
    assert store.revoke(token.id) == token
    assert store.check(text.encode(), "a", 6.0)[0] == "token_revoked"
    assert TokenStore(path).check(text.encode(), "a", 6.0)[0] == "token_revoked"


def test_the_listing_is_in_the_order_of_creation_then_id(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / tokens.TOKENS_FILE)
    late = store.create(30.0)[1]
    early = store.create(10.0)[1]
    twins = sorted((store.create(20.0)[1], store.create(20.0)[1]), key=lambda t: t.id)
    assert store.all() == [early, *twins, late]


def test_the_file_holds_hashes_only_is_private_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / tokens.TOKENS_FILE
    store = TokenStore(path)
    text, token = store.create(1.0, uses=2, pattern="p*")
    store.spend(token, "pa")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved == {
        "tokens": [
            {
                "id": token.id,
                "sha256": token.sha256,
                "created_at": 1.0,
                "uses": 2,
                "used": 1,
                "expires_at": None,
                "name_pattern": "p*",
                "revoked": False,
                "used_by": ["pa"],
            }
        ]
    }
    assert text not in path.read_text(encoding="utf-8")
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [tokens.TOKENS_FILE], "no temp left"
    again = TokenStore(path)
    assert again.all() == store.all() and len(again) == 1


def test_every_save_is_synced_file_then_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / tokens.TOKENS_FILE
    store = TokenStore(path)
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store.create(0.0)
    assert synced == [str(path) + ".tmp", str(tmp_path)]


def test_a_file_without_used_by_or_tokens_loads(tmp_path: Path) -> None:
    path = tmp_path / tokens.TOKENS_FILE
    path.write_text("{}", encoding="utf-8")
    assert len(TokenStore(path)) == 0
    entry = {"id": "i", "sha256": "h", "created_at": 0.0, "uses": 1}
    path.write_text(json.dumps({"tokens": [entry]}), encoding="utf-8")
    (loaded,) = TokenStore(path).all()
    assert loaded == Token("i", "h", 0.0, 1) and loaded.used_by == []
    assert len(TokenStore(tmp_path / "absent.json")) == 0
