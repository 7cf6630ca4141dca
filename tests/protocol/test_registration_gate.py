"""``eft_protocol.registry.registration_refusal``: a registry with a policy (a
``RegistrationGate``) is asked with every argument in its place, and its answer is the
refusal; a registry without one lets everyone register (the original design)."""

from __future__ import annotations

from typing import Any

from eft_protocol.registry import MemoryRegistry, RegistrationGate, registration_refusal


class Gate(MemoryRegistry):
    def __init__(self, answer: str | None) -> None:
        super().__init__()
        self.answer = answer
        self.asked: list[tuple[Any, ...]] = []

    def refuse_registration(
        self, name: str, client_id: bytes, version: int, now: float, token: bytes = b""
    ) -> str | None:
        self.asked.append((name, client_id, version, now, token))
        return self.answer


def test_a_gate_is_asked_with_each_argument_and_its_refusal_is_the_answer() -> None:
    gate = Gate("closed")
    assert isinstance(gate, RegistrationGate)
    refusal = registration_refusal(gate, "amy", b"\x01" * 16, 4, 12.5, token=b"t0k")
    assert refusal == "closed"
    assert gate.asked == [("amy", b"\x01" * 16, 4, 12.5, b"t0k")]


def test_no_token_is_asked_as_an_empty_one() -> None:
    gate = Gate(None)
    assert registration_refusal(gate, "amy", bytes(16), 3, 1.0) is None
    assert gate.asked == [("amy", bytes(16), 3, 1.0, b"")]


def test_a_registry_without_a_policy_refuses_nobody() -> None:
    registry = MemoryRegistry()
    assert not isinstance(registry, RegistrationGate)
    assert registration_refusal(registry, "amy", bytes(16), 3, 1.0, token=b"x") is None
