"""Writes the ``messages`` part of eft_v4_vectors.json: record plaintexts of the file
messages (docs/PROTOCOL-v4.md section 6), each with its fields, from the core's own
encoders, for ``make_vectors`` (which writes the whole JSON: ``python -m
tests.v4.make_vectors``). They need no keys: sealing is the record layer's.
"""

from __future__ import annotations

import hashlib
from typing import Any

from eft_protocol.v4 import records as rec
from eft_protocol.v4.file_digest import file_digest
from eft_protocol.v4.pack import PACK, PACK_ANSWER, Outcome, Refusal, encode_answer, encode_pack


def message_vectors(hello: bytes) -> list[dict[str, Any]]:
    """``hello``: the scenario file's bytes (``hello world\\n``)."""
    vectors: list[dict[str, Any]] = []

    def meta(label: str, file_id: int, size: int, upload_id: bytes, name: str, alg: int) -> None:
        plaintext = rec.FileMeta(file_id, size, upload_id, name, alg).encode()
        fields = {
            "file_id": file_id,
            "file_size": size,
            "upload_id": upload_id.hex(),
            "name": name,
            "digest_algorithm": alg,
        }
        vectors.append(
            {"label": label, "code": 828, "fields": fields, "plaintext": plaintext.hex()}
        )

    def received(label: str, file_id: int, size: int, alg: int, digest: bytes) -> None:
        plaintext = rec.encode_received(file_id, size, digest, alg)
        fields = {
            "file_id": file_id,
            "file_size": size,
            "digest_algorithm": alg,
            "digest": digest.hex(),
        }
        vectors.append(
            {"label": label, "code": 1603, "fields": fields, "plaintext": plaintext.hex()}
        )

    def error(label: str, number: int, message: str) -> None:
        plaintext = rec.encode_error(number, message)
        fields = {"error": number, "message": message}
        vectors.append(
            {"label": label, "code": 1607, "fields": fields, "plaintext": plaintext.hex()}
        )

    meta("828 metadata, a UTF-8 path", 2, 5, bytes([0x11]) * 16, "photos/2024/résumé 1.pdf", 1)
    meta("828 metadata asking for SHA-256", 3, 12, bytes([0x22]) * 16, "hello.txt", 2)
    received("1603 with BLAKE3 (algorithm 1)", 1, 12, 1, file_digest(hello).digest())
    received("1603 with SHA-256 (algorithm 2)", 3, 12, 2, hashlib.sha256(hello).digest())
    error(
        "1607 no space, before any data",
        rec.ErrorCode.NO_SPACE,
        "no space: the file needs 5000 more bytes, the server has room for 4999",
    )
    error("1607 bad name", rec.ErrorCode.BAD_FILE_NAME, "'../x' has a '..' component")
    error(
        "1607 unknown digest algorithm", rec.ErrorCode.UNKNOWN_DIGEST, "unknown digest algorithm 99"
    )
    # PACK (section 8.2): two whole files in one 904, the second under a UTF-8 path,
    # the last record before the client reads (SYNC_NOW); and a 1608 with each outcome.
    packed = [("hello.txt", hello), ("docs/ünï 日本.txt", b"abc")]
    entries = [(name.encode(), file_digest(data).digest(), data) for name, data in packed]
    vectors.append(
        {
            "label": "904 pack of two files, a UTF-8 path",
            "code": PACK,
            "fields": {
                "first_file_id": 5,
                "sync_now": True,
                "digest_algorithm": 1,
                "files": [
                    {"name": name, "digest": digest.hex(), "data": bytes(data).hex()}
                    for (name, _), (_, digest, data) in zip(packed, entries, strict=True)
                ],
            },
            "plaintext": encode_pack(5, 1, entries, sync_now=True).hex(),
        }
    )
    refusal = Refusal(rec.ErrorCode.BAD_FILE_NAME, "'../x' has a '..' component")
    outcomes: list[int | Refusal] = [Outcome.STORED, Outcome.DIGEST_DIFFERED, refusal]
    vectors.append(
        {
            "label": "1608 stored, digest differed, refused",
            "code": PACK_ANSWER,
            "fields": {
                "first_file_id": 5,
                "outcomes": [0, 1, {"error": refusal.error, "message": refusal.message}],
            },
            "plaintext": encode_answer(5, outcomes).hex(),
        }
    )
    return vectors


def main() -> int:
    """The whole JSON is written by make_vectors, which includes these."""
    from tests.v4 import make_vectors  # noqa: PLC0415 - it imports this module

    return make_vectors.main([])


if __name__ == "__main__":
    raise SystemExit(main())
