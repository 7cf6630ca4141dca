"""Rekeying (docs/PROTOCOL-v4.md §5): both sides replace each direction's key after every
``rekey_interval`` records, with no message; the interval is shrunk here (the real one,
2^16 records, is 64 GiB) through the sessions' ``rekey_interval``."""

from __future__ import annotations

import pytest

from eft_protocol import errors
from eft_protocol.v4 import records as rec

from . import make_vectors


def test_a_session_that_rekeys_after_every_record_completes() -> None:
    frames = make_vectors._frames(client_rekey=1, server_rekey=1)  # asserts the file verified
    plain = make_vectors._frames()
    # The handshake and each direction's first record use the split keys; then they differ.
    assert [f[2] for f in frames[:5]] == [f[2] for f in plain[:5]]
    assert all(a[2] != b[2] for a, b in zip(frames[5:], plain[5:], strict=True))


def test_peers_that_count_differently_fail_closed() -> None:
    with pytest.raises((errors.ProtocolError, AssertionError)):
        make_vectors._frames(client_rekey=1, server_rekey=2)


def test_the_rekeyed_key_is_noise_rekey_on_both_backends() -> None:
    key = bytes(range(32))
    ciphers = [
        rec.RecordCipher(key, backend, rekey_interval=1) for backend in ("openssl", "pycryptodome")
    ]
    for cipher in ciphers:
        cipher.seal(b"h", b"p")
    assert ciphers[0].key == ciphers[1].key != key
    assert ciphers[0].counter == 1  # the nonce counter goes on across a rekey
