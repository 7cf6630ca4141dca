"""In-process costs of the bulk work, per GiB: the floor the server and client sit on.

Each figure is CPU seconds to push 1 GiB (as 256 MiB of random data, four times over)
through one step in pieces of a given size, in this process, nothing else in the way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eft_protocol import crypto, engines
from eft_protocol.cksum import Cksum
from eft_protocol.codes import DEFAULT_PACKET_SIZE
from eft_protocol.v4 import records
from eft_protocol.v4.file_digest import file_digest

from .common import GiB, MiB, median

PIECES = (64 * 1024, 256 * 1024, 1 * MiB)


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
    backends = [b for b in engines.BACKENDS if b == "pycryptodome" or engines.openssl_available()]
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
            # As the drivers run them: into one reused output buffer.
            def encrypt(piece: int = piece, backend: str = backend) -> None:
                encryptor = crypto.CbcEncryptor(key, backend)
                buffer = bytearray(piece + 32)
                for i in range(0, volume, piece):
                    encryptor.update_into(view[i : i + piece], buffer)

            def decrypt_and_sum(piece: int = piece, backend: str = backend) -> None:
                decryptor = crypto.CbcDecryptor(key, backend)
                summer = Cksum()
                buffer = bytearray(piece + 32)
                plain = memoryview(buffer)
                for i in range(0, volume, piece):
                    count = decryptor.update_into(cipher_view[i : i + piece], buffer)
                    summer.update(plain[:count])

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
    # Version 4: open each 1 MiB record (AES-256-GCM) and hash the file (BLAKE3).
    header = bytes(23)
    for backend in backends:
        sealer = records.RecordCipher(key, backend)
        sealed = [sealer.seal(header, view[i : i + MiB]) for i in range(0, volume, MiB)]

        def open_and_hash(backend: str = backend, sealed: list[bytes] = sealed) -> None:
            opener = records.RecordCipher(key, backend)
            digest = file_digest()
            for record in sealed:
                digest.update(opener.open(header, record))

        out[f"v4: open AES-GCM {backend} + BLAKE3, 1 MiB records"] = _cost(
            open_and_hash, volume, repeats
        )
    from . import core  # noqa: PLC0415

    packet = f"{DEFAULT_PACKET_SIZE // 1024} KiB"
    out[f"server core: parser + session, {packet} packets, no I/O"] = core.measure(repeats)
    # The references for the server's target: decrypt and check with the engine the
    # server uses, in the pieces it sees (v3: one read of up to 256 KiB; v4: a record).
    figures["reference_key"] = f"decrypt+cksum {engines.DECRYPT_BACKEND}, 256 KiB"
    figures["reference_cpu_s_per_gib"] = out[figures["reference_key"]]
    figures["reference_key_v4"] = (
        f"v4: open AES-GCM {engines.DECRYPT_BACKEND} + BLAKE3, 1 MiB records"
    )
    figures["reference_cpu_s_per_gib_v4"] = out[figures["reference_key_v4"]]
    return figures


def file_to_file(directory: Path, repeats: int = 3, volume: int = 256 * MiB) -> dict[str, float]:
    """CPU seconds per GiB (user and kernel) for one process that reads the ciphertext
    from a file where the bench's servers write, decrypts and checks it as the server
    does, and writes the plaintext to a new file there. The in-memory references above
    leave out the two copies every receiver pays: bytes in, bytes out."""
    key = os.urandom(32)
    plaintext = os.urandom(volume)
    sealed_v3 = directory / "reference-v3.bin"
    sealed_v4 = directory / "reference-v4.bin"
    sealed_v3.write_bytes(crypto.CbcEncryptor(key, "pycryptodome").update(plaintext))
    header, gcm_key = bytes(23), os.urandom(32)
    sealer = records.RecordCipher(gcm_key)
    with open(sealed_v4, "wb") as out:
        for i in range(0, volume, MiB):
            out.write(sealer.seal(header, plaintext[i : i + MiB]))
    del plaintext
    target = directory / "reference-out.bin"
    piece = DEFAULT_PACKET_SIZE

    def v3() -> None:
        decryptor, summer = crypto.CbcDecryptor(key), Cksum()
        inbuf, outbuf = bytearray(piece), bytearray(piece + 32)
        plain = memoryview(outbuf)
        with open(sealed_v3, "rb", buffering=0) as src, open(target, "wb", buffering=0) as dst:
            while count := src.readinto(inbuf):
                done = decryptor.update_into(memoryview(inbuf)[:count], outbuf)
                summer.update(plain[:done])
                dst.write(plain[:done])
        target.unlink()

    def v4() -> None:
        opener, digest = records.RecordCipher(gcm_key), file_digest()
        record = bytearray(MiB + 16)
        with open(sealed_v4, "rb", buffering=0) as src, open(target, "wb", buffering=0) as dst:
            while src.readinto(record):
                data = opener.open(header, record)
                digest.update(data)
                dst.write(data)
        target.unlink()

    try:
        return {
            "reference_file_to_file_v3": _cost(v3, volume, repeats),
            "reference_file_to_file_v4": _cost(v4, volume, repeats),
        }
    finally:
        sealed_v3.unlink()
        sealed_v4.unlink()


def write_cost(directory: Path, repeats: int = 3, volume: int = GiB) -> float:
    """CPU seconds per GiB to write a new file where the bench's receivers write (the
    kernel's part of every receiving server's cost; on a VM, fresh pages cost most)."""
    piece = memoryview(os.urandom(256 * 1024))
    path = directory / "write-cost.bin"

    def write() -> None:
        with open(path, "wb", buffering=0) as out:
            for _ in range(volume // len(piece)):
                out.write(piece)
        path.unlink()

    return _cost(write, volume, repeats)


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
