"""What ``ServerSessionV4`` asks its driver to do: the version-4 server's effects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..notices import Notice
from .pack import PackedFile

# --- effects -------------------------------------------------------------------------


class SendFrame:
    """A response. Sealed when the driver first reads ``frame``, just before it sends it:
    a response dropped unsent (the change it reports could not be stored) uses no
    nonce, so the error that replaces it is sealed with the one the client expects."""

    __slots__ = ("_frame", "_seal", "code")

    def __init__(
        self, frame: bytes | None, code: int, seal: Callable[[], bytes] | None = None
    ) -> None:
        assert (frame is None) != (seal is None)
        self._frame, self._seal, self.code = frame, seal, code

    @property
    def frame(self) -> bytes:
        if self._frame is None:
            assert self._seal is not None
            self._frame, self._seal = self._seal(), None
        return self._frame

    def __repr__(self) -> str:
        return f"SendFrame(code={self.code}, sealed={self._frame is not None})"


@dataclass(frozen=True)
class Close:
    """Close the connection now, sending nothing more."""

    reason: str


@dataclass(frozen=True)
class OpenUpload:
    """Open, or find to resume, the partial upload; measure the room for it and check
    that its name can be stored; then call ``upload_ready``."""

    client_id: bytes
    upload_id: bytes
    name: str
    size: int
    digest_algorithm: int = 1  # file_digest.DigestAlgorithm.BLAKE3
    #: Metadata flagged STREAM: a fresh upload (the client resumes nothing of it), so
    #: nothing kept is looked for and no progress record is written.
    stream: bool = False


@dataclass(frozen=True)
class WriteChunk:
    """Append chunk ``index``; ``data`` is the record's plaintext: a view of the buffer
    the driver lent ``receive`` (``out``), valid until the driver takes it back."""

    index: int
    data: bytes | memoryview


@dataclass(frozen=True)
class FinishUpload:
    """All chunks are in: make them durable, then call ``upload_complete`` with the hash.
    With ``stream`` the sync is left to the group's ``CommitGroup``: only the hash."""

    stream: bool = False


@dataclass(frozen=True)
class CommitUpload:
    client_id: bytes
    name: str  # a relative path, checked (paths.check_path)
    size: int
    digest: bytes
    digest_algorithm: int = 1  # file_digest.DigestAlgorithm.BLAKE3


@dataclass(frozen=True)
class StageUpload:
    """A streamed file the client confirmed (903, digests equal): keep it, finished and
    closed, for the next ``CommitGroup``; nothing is durable or answered yet."""

    client_id: bytes
    name: str
    size: int
    digest: bytes
    digest_algorithm: int = 1


@dataclass(frozen=True)
class MakeFolder:
    """Make the folder ``name`` (a relative path) and its parents under the client's
    folder, durably (each made folder synced into its parent), following no link. A
    file or link in the way: call ``folder_refused``."""

    client_id: bytes
    name: str


@dataclass(frozen=True)
class StorePack:
    """PACK: write ``files`` (their digests already checked) as staged files for the
    next ``CommitGroup``, measuring the room and looking for what is in the way of each
    name; then call ``pack_stored`` with the entries refused. ``files``' data are views
    of the record the driver lent ``receive``, valid until it takes that back."""

    client_id: bytes
    digest_algorithm: int
    files: list[PackedFile]


@dataclass(frozen=True)
class CommitGroup:
    """Make every staged file durable under its name at once: sync each file's data,
    rename each into its folder, sync each folder touched once, write the registry.
    The answers that follow report them, so they go out only after this."""


@dataclass(frozen=True)
class DiscardUpload:
    """Delete the partial upload (aborted or refused by the client)."""


@dataclass(frozen=True)
class SuspendUpload:
    """The connection is gone mid-upload: keep what arrived for a later resume."""


Effect = (
    SendFrame
    | Close
    | OpenUpload
    | WriteChunk
    | FinishUpload
    | CommitUpload
    | StageUpload
    | StorePack
    | MakeFolder
    | CommitGroup
    | DiscardUpload
    | SuspendUpload
    | Notice
)
