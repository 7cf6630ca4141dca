"""When a connection's next bytes must have come: the protocol's timing rules, no clock.

As aioquic's ``get_timer``/``handle_timer``: the driver asks for the next ``Deadline``
with the time it read (``now``, any monotonic clock), waits at most until then, and if
nothing came calls ``on_deadline(now)``, which says whether the deadline has passed and
how to report it. The rules, for both versions:

* A client has ``handshake`` seconds from the accept to hold a key (version 3: 1602,
  version 4: the Noise handshake done), however busy it keeps the connection; whichever
  of that and the other limits comes first applies.
* Between requests it may be silent for ``idle`` seconds.
* Inside a frame each read must come within ``read`` seconds; version 3 also wants the
  whole frame within ``read`` seconds plus its size at ``min_frame_rate``, so a peer
  cannot hold a connection by trickling a byte at a time.
* Version 4 holds a connection mid-upload to ``read`` between records too: a client
  streaming a file has no reason to pause.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The slowest a version-3 frame's payload may arrive, on average (bytes per second).
MIN_FRAME_RATE = 64 * 1024


@dataclass(frozen=True, slots=True)
class TimeLimits:
    idle: float = 120.0
    read: float = 30.0
    handshake: float = 30.0
    min_frame_rate: float = MIN_FRAME_RATE


@dataclass(frozen=True, slots=True)
class Deadline:
    """Read again by ``at``; past it, the connection is closed for ``kind`` of silence."""

    kind: str  # "idle", "read" or "handshake": a metric label
    at: float
    #: The limit as the driver should report it (seconds it waited at most).
    seconds: float


class ReadDeadlines:
    """One connection's read deadlines (``accepted_at`` on the driver's clock)."""

    def __init__(self, limits: TimeLimits, accepted_at: float) -> None:
        self.limits = limits
        self.handshake_at = accepted_at + limits.handshake
        self._frame: int | None = None
        self._frame_started = 0.0
        self._current: Deadline | None = None

    def between_frames(self, now: float, *, has_key: bool, mid_upload: bool = False) -> Deadline:
        """The deadline for the first byte of the next frame."""
        self._frame = None
        limits = self.limits
        if mid_upload:
            deadline = Deadline("read", now + limits.read, limits.read)
        else:
            deadline = Deadline("idle", now + limits.idle, limits.idle)
        if not has_key and self.handshake_at < deadline.at:
            deadline = Deadline("handshake", self.handshake_at, self.handshake_at - now)
        self._current = deadline
        return deadline

    def inside_frame(
        self, now: float, *, frame_number: int, frame_size: int, has_key: bool
    ) -> Deadline:
        """Version 3: the deadline for the next bytes of frame ``frame_number``."""
        limits = self.limits
        if frame_number != self._frame:
            self._frame, self._frame_started = frame_number, now
        allowance = limits.read + frame_size / limits.min_frame_rate
        seconds = min(limits.read, self._frame_started + allowance - now)
        deadline = Deadline("read", now + seconds, seconds)
        if not has_key and self.handshake_at - now < seconds:
            deadline = Deadline("handshake", self.handshake_at, self.handshake_at - now)
        self._current = deadline
        return deadline

    def payload(self, now: float) -> Deadline:
        """Version 4: the deadline for a whole record payload, once its header is in."""
        self._current = Deadline("read", now + self.limits.read, self.limits.read)
        return self._current

    def deadline(self) -> Deadline | None:
        """The deadline last handed out (None before the first)."""
        return self._current

    def on_deadline(self, now: float) -> Deadline | None:
        """The driver's wait ended with no bytes: the deadline that passed, or None if
        it has not (a wake-up too early: wait again for what is left)."""
        current = self._current
        if current is None or now < current.at:
            return None
        return current
