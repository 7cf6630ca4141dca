"""me4.info's sealed key: the cost is in the line, keys sealed at the first format's cost
still open, and a file cannot name a cost that would exhaust memory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from eft_client.errors import ConfigError
from eft_client.identity_v4 import (
    SCRYPT_LOG2_N,
    IdentityV4,
    open_key,
    protect_identity_v4,
    read_stored_identity_v4,
    seal_key,
    sealed_cost,
    write_identity_v4,
)
from eft_protocol.noise import KeyPair

PRIVATE = bytes(range(32))
#: Sealed by the first format's code (N = 2^15, before the cost was in the line), with
#: the passphrase "correct horse": such files exist and must keep opening.
FIRST_FORMAT = (
    "x25519-scrypt:omOJZV2cmJNt10vfilGIjZF5xcg7pGLAcUv8UKDh57gxnOoMows1DQ8bgYDyGMPtbBS83V9mebv"
    "vQTubhf6KRx+EHmG13F2e8tH02w=="
)
WHERE = Path("me4.info")


def test_a_key_sealed_in_the_first_format_still_opens() -> None:
    assert open_key(FIRST_FORMAT, b"correct horse", WHERE) == PRIVATE
    with pytest.raises(ConfigError, match="wrong passphrase"):
        open_key(FIRST_FORMAT, b"wrong", WHERE)


def test_keys_are_sealed_now_at_the_measured_cost() -> None:
    line = seal_key(PRIVATE, b"pw")
    assert line.startswith(f"x25519-scrypt-n{SCRYPT_LOG2_N}:")
    assert SCRYPT_LOG2_N > 15
    assert sealed_cost(line) == SCRYPT_LOG2_N
    assert open_key(line, b"pw", WHERE) == PRIVATE


@pytest.mark.parametrize("cost", ["30", "8", "x"])
def test_a_cost_out_of_range_is_refused_before_any_work(cost: str) -> None:
    line = seal_key(PRIVATE, b"pw").replace(f"-n{SCRYPT_LOG2_N}:", f"-n{cost}:")
    with pytest.raises(ConfigError, match="scrypt cost"):
        open_key(line, b"pw", WHERE)


def _identity_file(directory: Path, line: str) -> None:
    identity = IdentityV4("zara", KeyPair.from_private(PRIVATE))
    write_identity_v4(directory, identity, None)
    text = (directory / "me4.info").read_text().splitlines()
    (directory / "me4.info").write_text(f"{text[0]}\n{text[1]}\n{line}\n")


def test_an_old_seal_is_sealed_again_at_todays_cost(tmp_path: Path) -> None:
    _identity_file(tmp_path, FIRST_FORMAT)
    stored = read_stored_identity_v4(tmp_path, b"correct horse")
    assert stored is not None and stored.upgrade_needed == "reseal"
    assert protect_identity_v4(tmp_path, stored, b"correct horse") == "reseal"
    line = (tmp_path / "me4.info").read_text().splitlines()[2]
    assert sealed_cost(line) == SCRYPT_LOG2_N
    again = read_stored_identity_v4(tmp_path, b"correct horse")
    assert again is not None and again.upgrade_needed is None
    assert again.identity.key.private == PRIVATE


def test_a_plain_key_given_a_passphrase_is_protected(tmp_path: Path) -> None:
    _identity_file(tmp_path, seal_key(PRIVATE, None))
    stored = read_stored_identity_v4(tmp_path, b"pw")
    assert stored is not None and stored.upgrade_needed == "protect"
    assert protect_identity_v4(tmp_path, stored, b"pw") == "protect"
    for name in ("me4.info", "priv4.key"):
        path = tmp_path / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "x25519:" not in path.read_text() and "x25519-scrypt-n" in path.read_text()
    with pytest.raises(ConfigError, match="passphrase"):
        read_stored_identity_v4(tmp_path, b"wrong")
