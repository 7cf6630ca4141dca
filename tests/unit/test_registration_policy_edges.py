"""The registration policy's edges (server/eft_server/registration_policy.py): the rate
window's instant, which refusal uses up what, tokens under each mode, the revocation
file, and the gated registry handing every other call to its engine unchanged."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, cast

import pytest
import structlog.testing

from eft_protocol.registry import ClientRecord, ClientRecordV4
from eft_server import registration_policy
from eft_server.registration_policy import (
    RATE_WINDOW,
    GatedRegistry,
    RegistrationPolicy,
    RegistrationRules,
    Revocations,
)
from eft_server.registry import EphemeralRegistry
from eft_server.tokens import TokenStore

BOB = ClientRecordV4(b"\x04" * 16, "bob", b"\x05" * 32, 10.0, 10.0)


def test_the_rules_as_the_server_describes_them() -> None:
    assert RegistrationRules().describe() == {
        "registration": "open",
        "register_allow": 0,
        "register_rate": None,
        "register_rate_per_address": None,
    }
    rules = RegistrationRules("allowlist", ("a", "b*"), rate=5, rate_per_address=2)
    assert rules.describe() == {
        "registration": "allowlist",
        "register_allow": 2,
        "register_rate": 5,
        "register_rate_per_address": 2,
    }


def test_a_registration_leaves_the_window_exactly_a_minute_later() -> None:
    policy = RegistrationPolicy(RegistrationRules(rate=1, rate_per_address=1))
    assert policy.refusal("a", "10.0.0.1", 100.0) is None
    assert policy.refusal("b", "10.0.0.2", 100.0 + RATE_WINDOW - 0.001) == "rate_limited"
    assert policy.refusal("b", "10.0.0.1", 100.0 + RATE_WINDOW) is None
    assert policy.refusal("c", "10.0.0.1", 100.0 + 2 * RATE_WINDOW - 0.001) == "rate_limited"


def test_the_per_address_window_also_ends_at_its_instant() -> None:
    policy = RegistrationPolicy(RegistrationRules(rate_per_address=2))
    assert policy.refusal("a", "x", 0.0) is None
    assert policy.refusal("b", "x", 1.0) is None
    assert policy.refusal("c", "x", RATE_WINDOW - 0.001) == "rate_limited_address"
    assert policy.refusal("c", "x", RATE_WINDOW) is None  # the first one left
    assert policy.refusal("d", "x", RATE_WINDOW + 0.5) == "rate_limited_address"


def test_an_address_refused_does_not_use_up_the_server_wide_rate() -> None:
    policy = RegistrationPolicy(RegistrationRules(rate=2, rate_per_address=1))
    assert policy.refusal("a", "x", 0.0) is None
    assert policy.refusal("b", "x", 1.0) == "rate_limited_address"
    assert policy.refusal("c", "y", 2.0) is None
    assert policy.refusal("d", "z", 3.0) == "rate_limited"
    assert policy.refusal("d", "z", RATE_WINDOW + 0.5) is None


def test_no_address_means_no_per_address_limit() -> None:
    policy = RegistrationPolicy(RegistrationRules(rate_per_address=1))
    assert [policy.refusal(n, None, 0.0) for n in "abc"] == [None, None, None]
    assert policy._recent_by_address == {}


def test_only_the_server_wide_rate_counts_without_a_per_address_one() -> None:
    policy = RegistrationPolicy(RegistrationRules(rate=3))
    for number in range(3):
        assert policy.refusal(f"n{number}", "same", float(number)) is None
    assert policy._recent_by_address == {}
    assert policy.refusal("n4", "other", 4.0) == "rate_limited"


def test_the_sweep_keeps_addresses_still_inside_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registration_policy, "_ADDRESS_SWEEP_AT", 3)
    policy = RegistrationPolicy(RegistrationRules(rate_per_address=1))
    policy.refusal("n", "old", 0.0)
    policy.refusal("n", "recent", 30.0)
    assert list(policy._recent_by_address) == ["old", "recent"]
    policy.refusal("n", "third", RATE_WINDOW + 1)  # two remembered: no sweep yet
    assert list(policy._recent_by_address) == ["old", "recent", "third"]
    assert policy.refusal("n", "recent", RATE_WINDOW + 2) == "rate_limited_address"
    assert list(policy._recent_by_address) == ["recent", "third"], "swept at the third"


def _tokens(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "tokens.json")


def test_token_mode_admits_by_token_only_and_spends_its_use(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    text, token = tokens.create(0.0, uses=1)
    policy = RegistrationPolicy(RegistrationRules("token"), tokens)
    assert policy.refusal("a", None, 1.0) == "no_token"
    assert policy.refusal("a", None, 1.0, b"eft_wrong") == "bad_token"
    assert policy.refusal("a", None, 1.0, text.encode()) is None
    spent = tokens.find(token.id)
    assert spent is not None and (spent.used, spent.used_by) == (1, ["a"])
    assert policy.refusal("b", None, 1.0, text.encode()) == "token_used"


def test_a_token_is_not_spent_by_a_registration_the_rate_refuses(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    text, token = tokens.create(0.0, uses=5)
    policy = RegistrationPolicy(RegistrationRules("token", rate=1), tokens)
    assert policy.refusal("a", None, 1.0, text.encode()) is None
    assert policy.refusal("b", None, 2.0, text.encode()) == "rate_limited"
    spent = tokens.find(token.id)
    assert spent is not None and spent.used_by == ["a"]


def test_an_allowlist_takes_a_token_for_a_name_it_does_not_cover(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    text, token = tokens.create(0.0, uses=1)
    policy = RegistrationPolicy(RegistrationRules("allowlist", ("lab-*",)), tokens)
    assert policy.refusal("lab-1", None, 1.0, text.encode()) is None
    unspent = tokens.find(token.id)
    assert unspent is not None and unspent.used == 0, "a listed name spends no token"
    assert policy.refusal("guest", None, 1.0) == "not_allowed"
    assert policy.refusal("guest", None, 1.0, b"eft_wrong") == "bad_token"
    assert policy.refusal("guest", None, 1.0, text.encode()) is None
    assert policy.refusal("guest2", None, 1.0, text.encode()) == "token_used"


def test_open_and_closed_ignore_tokens(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    text, token = tokens.create(0.0, uses=1)
    assert RegistrationPolicy(RegistrationRules(), tokens).refusal("a", None, 1.0) is None
    closed = RegistrationPolicy(RegistrationRules("closed"), tokens)
    assert closed.refusal("a", None, 1.0, text.encode()) == "closed"
    unspent = tokens.find(token.id)
    assert unspent is not None and unspent.used == 0


def test_a_policy_without_a_token_store_keeps_an_empty_one_in_memory() -> None:
    policy = RegistrationPolicy(RegistrationRules("token"))
    assert policy.tokens.path is None and len(policy.tokens) == 0
    assert policy.refusal("a", None, 0.0, b"eft_x") == "bad_token"


# --- revocations ------------------------------------------------------------------------


def test_the_revocation_file_by_version_sorted_and_private(tmp_path: Path) -> None:
    path = tmp_path / registration_policy.REVOKED_FILE
    revocations = Revocations(path)
    assert not path.exists()
    revocations.revoke(3, b"\x02" * 16)
    revocations.revoke(3, b"\x01" * 16)
    revocations.revoke(4, b"\x03" * 16)
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "v3": ["01" * 16, "02" * 16],
        "v4": ["03" * 16],
    }
    assert revocations.revoked(3) == frozenset({b"\x01" * 16, b"\x02" * 16})
    assert revocations.revoked(4) == frozenset({b"\x03" * 16})
    assert sorted(p.name for p in tmp_path.iterdir()) == [registration_policy.REVOKED_FILE]
    assert path.stat().st_mode & 0o777 == 0o600
    again = Revocations(path)
    assert again.revoked(3) == revocations.revoked(3)
    assert again.revoked(4) == revocations.revoked(4)


def test_restoring_a_client_never_revoked_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / registration_policy.REVOKED_FILE
    Revocations(path).restore(3, b"\x01" * 16)
    assert not path.exists()
    revocations = Revocations(path)
    revocations.revoke(4, b"\x01" * 16)
    revocations.restore(3, b"\x01" * 16)  # another version's id: still revoked
    assert (4, b"\x01" * 16) in Revocations(path)
    revocations.restore(4, b"\x01" * 16)
    assert json.loads(path.read_text(encoding="utf-8")) == {"v3": [], "v4": []}


def test_a_file_with_one_version_only_loads(tmp_path: Path) -> None:
    path = tmp_path / registration_policy.REVOKED_FILE
    path.write_text(json.dumps({"v4": ["aa" * 16]}), encoding="utf-8")
    revocations = Revocations(path)
    assert revocations.revoked(4) == frozenset({b"\xaa" * 16})
    assert revocations.revoked(3) == frozenset()


def test_each_revocation_is_synced_file_then_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / registration_policy.REVOKED_FILE
    revocations = Revocations(path)
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    revocations.revoke(3, b"\x01" * 16)
    assert synced == [str(path) + ".tmp", str(tmp_path)]


def test_revocations_in_memory_write_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    revocations = Revocations(None)
    revocations.revoke(3, b"\x01" * 16)
    assert (3, b"\x01" * 16) in revocations
    assert list(tmp_path.iterdir()) == []


# --- the gated registry -------------------------------------------------------------------


def test_a_refusal_is_counted_and_logged_with_the_connection_s_address() -> None:
    refused: list[str] = []
    gated = GatedRegistry(
        EphemeralRegistry(),
        RegistrationPolicy(RegistrationRules(rate_per_address=1)),
        Revocations(None),
        refused.append,
    )

    async def from_address() -> list[str | None]:
        registration_policy.connection_peer.set("192.0.2.9")
        return [
            gated.refuse_registration("a", b"\x01" * 16, 4, 0.0),
            gated.refuse_registration("b", b"\x02" * 16, 3, 1.0),
        ]

    with structlog.testing.capture_logs() as logs:
        assert asyncio.run(from_address()) == [None, "rate_limited_address"]
    assert refused == ["rate_limited_address"]
    assert logs == [
        {
            "event": "registration_policy_refused",
            "log_level": "warning",
            "reason": "rate_limited_address",
            "name": "b",
            "address": "192.0.2.9",
            "version": 3,
        }
    ]
    # outside a connection: no address, so no per-address limit
    assert gated.refuse_registration("c", b"\x03" * 16, 3, 2.0) is None


def test_without_a_callback_a_refusal_is_still_answered() -> None:
    gated = GatedRegistry(
        EphemeralRegistry(), RegistrationPolicy(RegistrationRules("closed")), Revocations(None)
    )
    assert gated.refuse_registration("a", b"\x01" * 16, 3, 0.0) == "closed"


def test_the_token_the_client_carried_reaches_the_policy(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    text, _ = tokens.create(0.0)
    gated = GatedRegistry(
        EphemeralRegistry(),
        RegistrationPolicy(RegistrationRules("token"), tokens),
        Revocations(None),
    )
    assert gated.refuse_registration("a", b"\x01" * 16, 4, 1.0) == "no_token"
    assert gated.refuse_registration("a", b"\x01" * 16, 4, 1.0, text.encode()) is None


def test_a_revoked_version_3_client_is_hidden_by_id_only_in_its_version() -> None:
    engine = EphemeralRegistry()
    alice = ClientRecord(b"\x01" * 16, "alice", last_seen=1.0, public_key=None)
    engine.save_client(alice)
    v4 = ClientRecordV4(b"\x01" * 16, "alice4", b"\x09" * 32, 1.0, 1.0)
    engine.save_client_v4(v4)
    gated = GatedRegistry(engine, RegistrationPolicy(RegistrationRules()), Revocations(None))
    assert gated.client_by_id(alice.client_id) == alice
    gated.revocations.revoke(3, alice.client_id)
    assert gated.client_by_id(alice.client_id) is None
    assert gated.client_by_name("alice") == alice, "the name stays taken"
    assert gated.client_v4_by_id(v4.client_id) == v4, "the same id in version 4: not revoked"
    assert gated.client_v4_by_key(v4.static_public) == v4
    assert gated.refuse_registration("x", alice.client_id, 3, 0.0) == "revoked"
    assert gated.refuse_registration("x", alice.client_id, 4, 0.0) is None


class _Recorder:
    """An engine that records each call and answers with a token of its own."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: object) -> object:
            self.calls.append((name, args))
            return ("answer", name)

        return call


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("client_by_name", ("alice",)),
        ("client_v4_by_name", ("bob",)),
        ("save_client", (ClientRecord(b"\x01" * 16, "a", 1.0, None),)),
        ("forget_client", (b"\x01" * 16,)),
        ("clients", ()),
        ("clients_v4", ()),
        ("client_count", ()),
        ("file", (b"\x01" * 16, "f.txt")),
        ("save_file", ("record",)),
        ("forget_file", (b"\x01" * 16, "f.txt")),
        ("files", ()),
        ("file_v4", (b"\x01" * 16, "a/b")),
        ("save_file_v4", ("record4",)),
        ("forget_file_v4", (b"\x01" * 16, "a/b")),
        ("files_v4", ()),
        ("flush", ()),
        ("revert", ("future",)),
        ("close", ()),
    ],
)
def test_every_other_call_goes_to_the_engine_unchanged(method: str, args: tuple[Any, ...]) -> None:
    engine = _Recorder()
    gated = GatedRegistry(
        cast(Any, engine), RegistrationPolicy(RegistrationRules()), Revocations(None)
    )
    answer = getattr(gated, method)(*args)
    assert engine.calls == [(method, args)]
    returns = method not in {
        "save_client",
        "forget_client",
        "save_file",
        "forget_file",
        "save_file_v4",
        "forget_file_v4",
        "revert",
        "close",
    }
    assert answer == (("answer", method) if returns else None)


def test_lookups_ask_the_engine_with_the_key_given() -> None:
    engine = _Recorder()
    gated = GatedRegistry(
        cast(Any, engine), RegistrationPolicy(RegistrationRules()), Revocations(None)
    )
    answers: list[object] = [gated.client_by_id(b"\x01" * 16), gated.client_v4_by_id(b"\x02" * 16)]
    assert answers == [("answer", "client_by_id"), ("answer", "client_v4_by_id")]
    assert engine.calls == [("client_by_id", (b"\x01" * 16,)), ("client_v4_by_id", (b"\x02" * 16,))]


def test_forgetting_a_v4_client_forgets_its_last_write_too() -> None:
    engine = EphemeralRegistry()
    gated = GatedRegistry(engine, RegistrationPolicy(RegistrationRules()), Revocations(None))
    gated.save_client_v4(BOB)
    gated.forget_client_v4(BOB.static_public)
    assert engine.client_v4_by_key(BOB.static_public) is None
    assert gated._last_seen_written == {}
    gated.forget_client_v4(b"\x07" * 32)  # never written: harmless


def test_the_last_writes_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registration_policy, "MAX_LAST_SEEN_KEPT", 2)
    gated = GatedRegistry(
        EphemeralRegistry(), RegistrationPolicy(RegistrationRules()), Revocations(None)
    )
    keys = [bytes([n]) * 32 for n in (1, 2, 3)]
    for number, key in enumerate(keys):
        gated.save_client_v4(ClientRecordV4(bytes([number]) * 16, f"c{number}", key, 1.0, 1.0))
    assert list(gated._last_seen_written) == [keys[2]], "cleared at the bound, then the new one"
    gated.save_client_v4(ClientRecordV4(b"\x00" * 16, "c0", keys[0], 1.0, 1.5))
    assert list(gated._last_seen_written) == [keys[2], keys[0]]


def test_a_log_in_earlier_than_the_last_write_is_written() -> None:
    engine = EphemeralRegistry()
    saved: list[float] = []
    real = engine.save_client_v4

    def save(record: ClientRecordV4) -> None:
        saved.append(record.last_seen)
        real(record)

    engine.save_client_v4 = save  # type: ignore[method-assign]
    gated = GatedRegistry(engine, RegistrationPolicy(RegistrationRules()), Revocations(None))
    gated.save_client_v4(BOB)
    gated.save_client_v4(BOB.seen(9.5))  # a clock stepped back: not "just now"
    gated.save_client_v4(BOB.seen(9.5))  # the same instant again: skipped
    assert saved == [10.0, 9.5]


def test_a_token_is_checked_against_the_name_and_the_time_asked(tmp_path: Path) -> None:
    tokens = _tokens(tmp_path)
    text, _ = tokens.create(0.0, uses=5, lifetime=60, pattern="team-*")
    policy = RegistrationPolicy(RegistrationRules("token"), tokens)
    assert policy.refusal("bob", None, 1.0, text.encode()) == "token_name"
    assert policy.refusal("team-a", None, 60.0, text.encode()) == "token_expired"
    assert policy.refusal("team-a", None, 59.0, text.encode()) is None


def test_the_gate_asks_the_policy_about_the_name_registered() -> None:
    gated = GatedRegistry(
        EphemeralRegistry(),
        RegistrationPolicy(RegistrationRules("allowlist", ("lab-*",))),
        Revocations(None),
    )
    assert gated.refuse_registration("lab-1", b"\x01" * 16, 4, 0.0) is None
    assert gated.refuse_registration("guest", b"\x02" * 16, 3, 0.0) == "not_allowed"
