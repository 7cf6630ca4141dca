"""The version-3 server's record of one file across its attempts, and the small facts
about request events that ``ServerSession`` asks for each one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import crypto, errors
from .cksum import Cksum
from .codes import RequestCode, padded_size
from .notices import Transfer
from .parser import (
    PacketContent,
    PacketFinished,
    PacketStarted,
    RequestEvent,
    RequestReceived,
    RequestRejected,
)
from .server_table import ServerLimits
from .wire import PacketHeader


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

    def begin_attempt(
        self,
        packet: PacketHeader,
        number: int,
        total: int,
        aes_key: bytes,
        limits: ServerLimits,
    ) -> None:
        """A new attempt at this file starts with ``packet``: counted against the limit,
        its decryptor and checksum fresh, its declared sizes taken when they hold."""
        self.attempts += 1
        if self.attempts > limits.max_attempts:
            raise errors.TooManyAttempts(f"attempt {self.attempts} at {self.storage_name!r}")
        self.total_packets = total
        self.zero_based = number == 0
        self.next_number = number
        self.received = self.plain_size = 0
        self.cksum = Cksum()
        self.decryptor = crypto.CbcDecryptor(aes_key)
        # Section 8: sizes are advisory. When they agree with each other they describe
        # the whole file and are enforced; otherwise they are per packet and ignored.
        if packet.content_size == padded_size(packet.orig_file_size):
            if packet.orig_file_size > limits.max_file_size:
                raise errors.FileTooLarge(f"{packet.orig_file_size} bytes is over the limit")
            self.declared_cipher_size = packet.content_size
            self.declared_plain_size = packet.orig_file_size
        else:
            self.declared_cipher_size = self.declared_plain_size = None


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
