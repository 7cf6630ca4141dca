"""In-process costs of the bulk work, per GiB: the floor the server and client sit on.

Each figure is CPU seconds to push 1 GiB (as 256 MiB of random data, four times over)
through one step in pieces of a given size, in this process, nothing else in the way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from eft_protocol import crypto
from eft_protocol.cksum import Cksum

from .common import GiB, MiB, median

PIECES = (64 * 1024, 1 * MiB)


def _cost(work: Callable[[], None], volume: int, repeats: int) -> float:
    """Median CPU seconds per GiB of ``work`` (which handles ``volume`` bytes)."""
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        samples.append((time.process_time() - started) * GiB / volume)
    return median(samples)


def measure(repeats: int = 3, volume: int = 256 * MiB) -> dict[str, Any]:
    key = os.urandom(32)
    plaintext = os.urandom(volume)
    ciphertext = crypto.CbcEncryptor(key, "pycryptodome").update(plaintext)
    view, cipher_view = memoryview(plaintext), memoryview(ciphertext)
    backends = [b for b in crypto.BACKENDS if b == "pycryptodome" or crypto.openssl_available()]
    figures: dict[str, Any] = {"backends": backends, "per_gib": {}}
    out = figures["per_gib"]
    for piece in PIECES:
        label = f"{piece // 1024} KiB"

        def checksum(piece: int = piece) -> None:
            summer = Cksum()
            for i in range(0, volume, piece):
                summer.update(view[i : i + piece])

        out[f"cksum, {label}"] = _cost(checksum, volume, repeats)
        for backend in backends:

            def encrypt(piece: int = piece, backend: str = backend) -> None:
                encryptor = crypto.CbcEncryptor(key, backend)
                for i in range(0, volume, piece):
                    encryptor.update(view[i : i + piece])

            def decrypt_and_sum(piece: int = piece, backend: str = backend) -> None:
                decryptor = crypto.CbcDecryptor(key, backend)
                summer = Cksum()
                for i in range(0, volume, piece):
                    summer.update(decryptor.update(cipher_view[i : i + piece]))

            out[f"encrypt {backend}, {label}"] = _cost(encrypt, volume, repeats)
            out[f"decrypt+cksum {backend}, {label}"] = _cost(decrypt_and_sum, volume, repeats)

    def sequential_cbc() -> None:  # what decryption cost before the ECB+XOR engine
        cipher = crypto.AES.new(key, crypto.AES.MODE_CBC, iv=crypto.ZERO_IV)
        summer = Cksum()
        for i in range(0, volume, 64 * 1024):
            summer.update(cipher.decrypt(cipher_view[i : i + 64 * 1024]))

    out["decrypt+cksum pycryptodome sequential CBC (before), 64 KiB"] = _cost(
        sequential_cbc, volume, repeats
    )
    from . import core  # noqa: PLC0415

    out["server core: parser + session, 64 KiB packets, no I/O"] = core.measure(repeats)
    # The reference for the server's target: decrypt and checksum with the engine the
    # server uses, in the pieces it sees (one 828 packet's content, 64 KiB).
    figures["reference_key"] = f"decrypt+cksum {crypto.DECRYPT_BACKEND}, 64 KiB"
    figures["reference_cpu_s_per_gib"] = out[figures["reference_key"]]
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
