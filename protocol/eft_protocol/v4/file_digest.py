"""The whole-file digest that 1603 carries: BLAKE3, 32 bytes.

Both ends hash every byte of the file as it passes (the resumed prefix included), and
the client compares. The AEAD already authenticates each record, so this digest guards
against bugs and files that change while they are sent, not against an attacker; it
only has to be a sound hash that costs little. SHA-256 cost 0.60 CPU-s per GiB on each
side of the link on the bench machine (SHA-NI), a third of all the work; BLAKE3 costs
0.17 (docs/PROTOCOL-v4.md, "Choices"; docs/PERFORMANCE.md).

The metadata names the algorithm the sender wants and 1603 names the one used
(``DigestAlgorithm``): a peer that meets an algorithm it lacks says so ("unknown digest
algorithm"), never sees a silent mismatch. SHA-256 is there for peers without BLAKE3.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Protocol

from blake3 import blake3

NAME = "BLAKE3"
DIGEST_SIZE = 32


class DigestAlgorithm(enum.IntEnum):
    """The number the metadata and 1603 carry for a whole-file digest (32 bytes each)."""

    BLAKE3 = 1
    SHA256 = 2


class FileHasher(Protocol):
    """What both hashers offer (``blake3`` and ``hashlib``'s)."""

    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


def file_digest(data: bytes | bytearray | memoryview = b"") -> FileHasher:
    """A BLAKE3 hasher: ``update`` with the file's bytes in order, then ``digest()``."""
    hasher: FileHasher = blake3(data)
    return hasher


def hasher_for(algorithm: int) -> FileHasher:
    """A fresh hasher for ``algorithm``; raises ``ValueError`` for one we lack."""
    if algorithm == DigestAlgorithm.BLAKE3:
        return file_digest()
    if algorithm == DigestAlgorithm.SHA256:
        hasher: FileHasher = hashlib.sha256()
        return hasher
    raise ValueError(f"unknown digest algorithm {algorithm}")


def algorithm_label(algorithm: int) -> str:
    """The registry's name for it (``files_v4.DigestAlgorithm``): ``blake3``, ``sha256``."""
    return DigestAlgorithm(algorithm).name.lower()
