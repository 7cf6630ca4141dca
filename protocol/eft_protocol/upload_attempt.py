"""The version-3 server's record of one file across its attempts, and the small facts
about request events that ``ServerSession`` asks for each one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import crypto
from .cksum import Cksum
from .codes import RequestCode
from .notices import Transfer
from .parser import (
    PacketContent,
    PacketFinished,
    PacketStarted,
    RequestEvent,
    RequestReceived,
    RequestRejected,
)


@dataclass(slots=True)
class Upload:
    """One file across its attempts (they share the name and the attempt count)."""

    file_name: str  # as sent, echoed in 1603
    storage_name: str
    started: float
    attempts: int = 0
    # The current attempt:
    total_packets: int = 0
    zero_based: bool = False
    next_number: int = 0
    declared_cipher_size: int | None = None  # None: the sender's sizes are per packet
    declared_plain_size: int | None = None
    received: int = 0
    plain_size: int = 0
    decryptor: crypto.CbcDecryptor | None = None
    cksum: Cksum = field(default_factory=Cksum)
    final_cksum: int | None = None

    @property
    def last_number(self) -> int:
        return self.total_packets - 1 if self.zero_based else self.total_packets


def sent_numbers(number: int, total: int) -> tuple[int, int]:
    """Section 8: some clients swap the two fields; a number never exceeds the total."""
    return (total, number) if number > total else (number, total)


def is_packet_event(event: RequestEvent) -> bool:
    if isinstance(event, PacketStarted | PacketContent | PacketFinished):
        return True
    return isinstance(event, RequestRejected) and event.header.code == RequestCode.SEND_FILE


def request_code(event: RequestEvent) -> int | None:
    if isinstance(event, RequestReceived):
        return int(event.request.code)
    if isinstance(event, RequestRejected):
        return event.header.code
    return int(RequestCode.SEND_FILE)


def transfer_notice(
    outcome: str, upload: Upload, *, now: float | None = None, reason: str = ""
) -> Transfer:
    fields: dict[str, Any] = {
        "outcome": outcome,
        "file": upload.storage_name,
        "attempt": upload.attempts,
        "bytes": upload.plain_size,
        "ciphertext_bytes": upload.received,
    }
    if now is not None:
        fields["duration"] = now - upload.started
    if reason:
        fields["reason"] = reason
    return Transfer(fields)
