"""``HelloGate``'s arithmetic, each piece at its edge: the load estimate, the secrets'
rotation, the cookie's MAC and the per-address bucket (test_cookies.py runs them
through the sessions)."""

from __future__ import annotations

import hashlib

import pytest

from eft_protocol.v4 import admission as adm
from eft_protocol.v4.admission import Admission, HelloGate, make_cookie

HERE = bytes([127, 0, 0, 2])
KEY = bytes(range(32))


class Secrets:
    """Numbered secrets, and how many bytes each call asked for."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, size: int) -> bytes:
        self.sizes.append(size)
        return bytes([len(self.sizes)]) * size


def test_the_constants() -> None:
    assert (adm.COOKIE_SIZE, adm.COOKIE_ROTATION, adm.MAX_TRACKED_ADDRESSES) == (16, 120.0, 4096)
    assert adm.COOKIE_LABEL == b"eft/4 cookie"
    assert [a.value for a in Admission] == ["answer", "cookie", "rate_limited"]


def test_the_cookie_is_a_keyed_blake2s_of_label_length_address_and_key() -> None:
    secret = b"s" * 32
    data = b"eft/4 cookie" + b"\x04" + HERE + KEY
    expected = hashlib.blake2s(data, key=secret, digest_size=16).digest()
    assert make_cookie(secret, HERE, KEY) == expected


def test_the_load_is_this_second_and_the_rest_of_the_last() -> None:
    gate = HelloGate(cookies_above=100)
    for _ in range(4):
        assert gate.admit(HERE, KEY, b"", 9.5) is Admission.ANSWER
    assert gate.recent_answers(9.9) == 4
    assert gate.recent_answers(10.25) == 3.0  # 0 now + 4 * 0.75
    gate.admit(HERE, KEY, b"", 10.5)
    assert gate.recent_answers(10.5) == 1 + 4 * 0.5
    assert gate.recent_answers(12.0) == 0  # two seconds on: nothing recent


def test_a_fresh_gate_has_answered_nothing() -> None:
    assert HelloGate().recent_answers(0.5) == 0


def test_every_cookie_reply_is_counted() -> None:
    gate = HelloGate(cookies_above=0, random_bytes=Secrets())
    for expected in (1, 2, 3):
        assert gate.admit(HERE, KEY, b"", 1.0) is Admission.COOKIE
        assert gate.cookies_sent == expected


def test_under_load_from_exactly_the_threshold() -> None:
    assert HelloGate().under_load(0.0) is False
    gate = HelloGate(cookies_above=2)
    gate.admit(HERE, KEY, b"", 1.0)
    assert gate.under_load(1.0) is False
    gate.admit(HERE, KEY, b"", 1.0)
    assert gate.under_load(1.0) is True
    assert HelloGate(cookies_above=0).under_load(0.0) is True


def test_secrets_rotate_by_epoch_and_keep_only_the_one_before() -> None:
    made = Secrets()
    gate = HelloGate(random_bytes=made, rotation=10.0)
    assert gate._secrets(5.0) == (b"\x01" * 32, b"")
    assert gate._secrets(9.99) == (b"\x01" * 32, b"")
    assert gate._secrets(10.0) == (b"\x02" * 32, b"\x01" * 32)
    assert gate._secrets(35.0) == (b"\x03" * 32, b"")  # a quiet spell: both dropped
    assert made.sizes == [32, 32, 32]


def test_a_cookie_is_valid_under_this_secret_or_the_one_before() -> None:
    gate = HelloGate(random_bytes=Secrets(), rotation=10.0)
    cookie = gate.cookie_for(HERE, KEY, 1.0)
    assert cookie == make_cookie(b"\x01" * 32, HERE, KEY)
    assert gate.cookie_valid(cookie, HERE, KEY, 1.0)
    assert gate.cookie_valid(cookie, HERE, KEY, 15.0)
    assert not gate.cookie_valid(cookie, HERE, KEY, 25.0)
    assert not gate.cookie_valid(cookie[:15], HERE, KEY, 1.0)
    assert not gate.cookie_valid(cookie + b"\x00", HERE, KEY, 1.0)
    assert not gate.cookie_valid(cookie, bytes([127, 0, 0, 3]), KEY, 1.0)


def test_no_cookie_is_made_under_an_empty_previous_secret() -> None:
    gate = HelloGate(random_bytes=Secrets(), rotation=10.0)
    unkeyed = make_cookie(b"", HERE, KEY)  # what anyone could compute
    assert not gate.cookie_valid(unkeyed, HERE, KEY, 1.0)


def test_under_load_a_message_1_without_a_valid_cookie_gets_one() -> None:
    gate = HelloGate(cookies_above=0, random_bytes=Secrets())
    assert gate.admit(HERE, KEY, b"", 1.0) is Admission.COOKIE
    assert (gate.cookies_sent, gate.answered) == (1, 0)
    cookie = gate.cookie_for(HERE, KEY, 1.0)
    assert gate.admit(HERE, KEY, cookie, 1.0) is Admission.ANSWER
    assert (gate.cookies_sent, gate.answered, gate._this_second) == (1, 1, 1)


def test_the_bucket_holds_rate_tokens_and_refills_at_rate() -> None:
    gate = HelloGate(rate_per_address=2)
    assert gate.admit(HERE, KEY, b"", 1.0) is Admission.ANSWER
    assert gate.admit(HERE, KEY, b"", 1.0) is Admission.ANSWER
    assert gate.admit(HERE, KEY, b"", 1.0) is Admission.RATE_LIMITED
    assert gate.rate_limited == 1 and gate.answered == 2
    assert gate._buckets[HERE] == (0.0, 1.0)
    assert gate.admit(HERE, KEY, b"", 1.25) is Admission.RATE_LIMITED  # half a token
    assert gate._buckets[HERE] == (0.5, 1.25)
    assert gate.admit(HERE, KEY, b"", 1.5) is Admission.ANSWER  # exactly one
    assert gate._buckets[HERE] == (0.0, 1.5)
    assert gate.admit(HERE, KEY, b"", 100.0) is Admission.ANSWER
    assert gate._buckets[HERE] == (1.0, 100.0)  # capped at rate, less the one taken


def test_a_clock_stepping_back_adds_no_token() -> None:
    gate = HelloGate(rate_per_address=1)
    assert gate.admit(HERE, KEY, b"", 10.0) is Admission.ANSWER
    assert gate.admit(HERE, KEY, b"", 5.0) is Admission.RATE_LIMITED
    assert gate._buckets[HERE] == (0.0, 5.0)


def test_no_rate_means_no_bucket() -> None:
    gate = HelloGate()
    for _ in range(50):
        assert gate.admit(HERE, KEY, b"", 1.0) is Admission.ANSWER
    assert gate._buckets == {}


def test_the_least_recently_seen_half_is_forgotten_past_the_limit() -> None:
    gate = HelloGate(rate_per_address=1)
    addresses = [index.to_bytes(4, "big") for index in range(adm.MAX_TRACKED_ADDRESSES + 1)]
    for address in addresses[: adm.MAX_TRACKED_ADDRESSES]:
        gate.admit(address, KEY, b"", 1.0)
    assert len(gate._buckets) == adm.MAX_TRACKED_ADDRESSES
    gate.admit(addresses[0], KEY, b"", 1.0)  # seen again: now the most recent
    gate.admit(addresses[-1], KEY, b"", 1.0)
    assert len(gate._buckets) == adm.MAX_TRACKED_ADDRESSES + 1 - adm.MAX_TRACKED_ADDRESSES // 2
    assert addresses[0] in gate._buckets and addresses[1] not in gate._buckets
    assert addresses[adm.MAX_TRACKED_ADDRESSES // 2] not in gate._buckets
    assert addresses[adm.MAX_TRACKED_ADDRESSES // 2 + 1] in gate._buckets
    assert gate.admit(addresses[1], KEY, b"", 1.0) is Admission.ANSWER  # starts full again


@pytest.mark.parametrize("now", [0.0, 119.99])
def test_the_default_rotation_is_two_minutes(now: float) -> None:
    gate = HelloGate(random_bytes=Secrets())
    assert gate._secrets(now)[0] == b"\x01" * 32
    assert gate._secrets(120.0) == (b"\x02" * 32, b"\x01" * 32)
