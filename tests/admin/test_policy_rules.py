"""The registration policy's decisions, with the time given (no clock), and its flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from eft_protocol.notices import NameRefused
from eft_protocol.registry import ClientRecordV4, MemoryRegistry, registration_refusal
from eft_protocol.wire import Registered, RegisterRequest, RegistrationFailed
from eft_server.config import load_config
from eft_server.registration_policy import (
    RATE_WINDOW,
    GatedRegistry,
    RegistrationPolicy,
    RegistrationRules,
    Revocations,
)
from eft_server.registry import EphemeralRegistry
from eft_server.sqlite_registry import SqliteRegistry
from tests.protocol.memory_link import MemoryLink


def test_open_lets_every_name_register() -> None:
    policy = RegistrationPolicy(RegistrationRules())
    assert all(policy.refusal(f"n{i}", "10.0.0.1", 0.0) is None for i in range(100))


def test_closed_refuses_every_new_name() -> None:
    assert RegistrationPolicy(RegistrationRules("closed")).refusal("a", None, 0.0) == "closed"


def test_allowlist_takes_names_and_glob_patterns_case_sensitively() -> None:
    policy = RegistrationPolicy(RegistrationRules("allowlist", ("alice", "lab-*", "x?")))
    assert policy.refusal("alice", None, 0.0) is None
    assert policy.refusal("lab-7", None, 0.0) is None
    assert policy.refusal("xy", None, 0.0) is None
    assert policy.refusal("Alice", None, 0.0) == "not_allowed"
    assert policy.refusal("alice2", None, 0.0) == "not_allowed"
    assert policy.refusal("lab", None, 0.0) == "not_allowed"


def test_the_server_wide_rate_counts_a_sliding_minute() -> None:
    policy = RegistrationPolicy(RegistrationRules(rate=2))
    assert policy.refusal("a", "1", 0.0) is None
    assert policy.refusal("b", "2", 10.0) is None
    assert policy.refusal("c", "3", 59.0) == "rate_limited"
    assert policy.refusal("c", "3", RATE_WINDOW + 0.5) is None  # the first one left
    assert policy.refusal("d", "4", RATE_WINDOW + 1.0) == "rate_limited"


def test_the_per_address_rate_counts_each_address_alone() -> None:
    policy = RegistrationPolicy(RegistrationRules(rate_per_address=1))
    assert policy.refusal("a", "10.0.0.1", 0.0) is None
    assert policy.refusal("b", "10.0.0.1", 1.0) == "rate_limited_address"
    assert policy.refusal("b", "10.0.0.2", 1.0) is None
    assert policy.refusal("b", "10.0.0.1", RATE_WINDOW + 1.0) is None


def test_refused_registrations_do_not_use_up_the_rate() -> None:
    policy = RegistrationPolicy(RegistrationRules("allowlist", ("ok*",), rate=1))
    assert policy.refusal("bad", None, 0.0) == "not_allowed"
    assert policy.refusal("ok1", None, 0.0) is None


def test_idle_addresses_are_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("eft_server.registration_policy._ADDRESS_SWEEP_AT", 3)
    policy = RegistrationPolicy(RegistrationRules(rate_per_address=1))
    for number in range(3):
        policy.refusal("n", f"10.0.0.{number}", 0.0)
    policy.refusal("n", "10.0.1.0", RATE_WINDOW + 1)
    assert list(policy._recent_by_address) == ["10.0.1.0"]


def test_a_registry_without_a_gate_lets_everyone_register() -> None:
    assert registration_refusal(MemoryRegistry(), "a", bytes(16), 3, 0.0) is None


def test_revocations_survive_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "revoked.json"
    revocations = Revocations(path)
    revocations.revoke(4, b"\x01" * 16)
    revocations.revoke(3, b"\x02" * 16)
    again = Revocations(path)
    assert (4, b"\x01" * 16) in again and (3, b"\x02" * 16) in again
    assert (3, b"\x01" * 16) not in again
    again.restore(4, b"\x01" * 16)
    assert (4, b"\x01" * 16) not in Revocations(path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_patterns_alone_make_an_allowlist(tmp_path: Path) -> None:
    listed = tmp_path / "allowed"
    listed.write_text("# lab clients\nlab-*\n\nalice  # the operator\n")
    loaded = load_config(
        ["--port", "1", "--register-allow", "bob", "--register-allow-file", str(listed)], {}
    )
    assert loaded.registration == "allowlist"
    assert loaded.register_allow == ("bob", "lab-*", "alice")
    from_env = load_config(
        ["--port", "1"], {"EFT_REGISTER_ALLOW": "a, b*", "EFT_REGISTER_RATE": "5"}
    )
    assert from_env.register_allow == ("a", "b*") and from_env.register_rate == 5
    assert load_config(["--port", "1"], {}).registration == "open"


@pytest.mark.parametrize(
    "argv",
    [
        ["--registration", "allowlist"],
        ["--registration", "closed", "--register-allow", "a"],
        ["--registration", "shut"],
        ["--register-rate", "0"],
        ["--register-allow-file", "/nonexistent/allowed"],
    ],
)
def test_inconsistent_policies_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        load_config(["--port", "1", *argv], {})
    assert exit_.value.code == 2
    assert "usage" in capsys.readouterr().err


class _Gated(MemoryRegistry):
    """A registry with a gate that records what it was asked and refuses ``refused``."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused
        self.asked: list[tuple[str, int, float]] = []

    def refuse_registration(
        self, name: str, client_id: bytes, version: int, now: float, token: bytes = b""
    ) -> str | None:
        self.asked.append((name, version, now))
        return "closed" if name == self.refused else None


def test_the_v3_session_asks_the_gate_for_new_names_only_and_answers_1601() -> None:
    registry = _Gated(refused="mallory")
    link = MemoryLink(registry)
    link.to_server([RegisterRequest(bytes(16), "alice").encode()])
    assert isinstance(link.next_response(), Registered)
    link = MemoryLink(registry)
    link.to_server([RegisterRequest(bytes(16), "mallory").encode()])
    assert isinstance(link.next_response(), RegistrationFailed)
    refused = [n for n in link.store.notices if isinstance(n, NameRefused)]
    assert refused and refused[0].fields == {"name": "mallory", "reason": "closed"}
    link = MemoryLink(registry)
    link.to_server([RegisterRequest(bytes(16), "alice").encode()])  # taken: no question
    assert isinstance(link.next_response(), RegistrationFailed)
    assert [(name, version) for name, version, _now in registry.asked] == [
        ("alice", 3),
        ("mallory", 3),
    ]
    assert registry.client_by_name("mallory") is None


def test_a_revoked_client_is_hidden_from_logins_and_refused_under_a_new_name() -> None:
    engine = EphemeralRegistry()
    record = ClientRecordV4(b"\x04" * 16, "bob", b"\x05" * 32, 1.0, 1.0)
    engine.save_client_v4(record)
    refused: list[str] = []
    gated = GatedRegistry(
        engine, RegistrationPolicy(RegistrationRules()), Revocations(None), refused.append
    )
    assert gated.client_v4_by_key(record.static_public) == record
    gated.revocations.revoke(4, record.client_id)
    assert gated.client_v4_by_key(record.static_public) is None
    assert gated.client_v4_by_id(record.client_id) is None
    assert gated.client_v4_by_name("bob") == record, "the name stays taken"
    assert gated.refuse_registration("bob2", record.client_id, 4, 2.0) == "revoked"
    assert gated.refuse_registration("carol", b"\x06" * 16, 4, 2.0) is None
    assert refused == ["revoked"]


def test_sqlite_forgets_a_v4_client_in_its_cache_count_and_file(tmp_path: Path) -> None:
    path = tmp_path / "eft.sqlite3"
    registry = SqliteRegistry(path)
    record = ClientRecordV4(b"\x04" * 16, "bob", b"\x05" * 32, 1.0, 1.0)
    registry.save_client_v4(record)
    settle(registry)
    assert registry.client_v4_by_name("bob") == record  # cached now
    assert registry.client_count() == 1
    registry.forget_client_v4(record.static_public)
    registry.forget_client_v4(b"\x07" * 32)  # unknown: nothing to do
    settle(registry)
    assert registry.client_v4_by_name("bob") is None
    assert registry.client_v4_by_key(record.static_public) is None
    assert registry.client_v4_by_id(record.client_id) is None
    assert registry.client_count() == 0
    registry.close()
    again = SqliteRegistry(path)
    assert again.client_v4_by_name("bob") is None and again.client_count() == 0
    again.close()


def settle(registry: SqliteRegistry) -> None:
    pending = registry.flush()
    if pending is not None:
        pending.result(timeout=60)
