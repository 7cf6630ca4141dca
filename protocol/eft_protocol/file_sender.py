"""One attempt at a file, for the version-3 client: encrypted, checksummed and cut
into 828 frames as its bytes arrive (``ClientSession.begin_file`` makes one).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from . import crypto
from .cksum import Cksum
from .codes import AES_BLOCK_SIZE, MAX_PACKETS, padded_size
from .wire import PacketHeader


class SendingSession(Protocol):
    """What a sender needs of its session: the id to frame with, and to be told the
    attempt is all sent (its checksum, for the verdict)."""

    @property
    def client_id(self) -> bytes: ...

    def _file_sent(self, checksum: int) -> None: ...


#: Plaintext encrypted per call by ``feed_pieces`` without an output buffer. A piece
#: that stays in the CPU's cache encrypts about twice as fast as a 1 MiB one.
ENCRYPT_PIECE = 64 * 1024

#: What ``feed_pieces`` returns: frames cut in pieces (headers and content), in order.
Piece = bytes | memoryview


class FileSender:
    """Encrypts, checksums and packetizes one attempt at a file, as its bytes arrive.

    ``feed``/``finish`` return whole frames. ``feed_pieces``/``finish_pieces`` return the
    same bytes as a list of pieces (each packet's header, then its content, which is not
    copied into a frame): what a driver hands to ``writelines``.
    """

    def __init__(
        self, session: SendingSession, file_name: str, size: int, packet_size: int, key: bytes
    ) -> None:
        if packet_size <= 0:
            raise ValueError("packet size must be positive")
        self._session = session
        self.file_name = file_name
        self.size = size
        self.content_size = padded_size(size)
        # 65535 packets at most: grow the packets for very large files, to a whole number
        # of AES blocks (as the C++ client does), so each packet decrypts on its own.
        needed = -(-self.content_size // MAX_PACKETS)
        if packet_size < needed:
            packet_size = -(-needed // AES_BLOCK_SIZE) * AES_BLOCK_SIZE
        self.packet_size = packet_size
        self.total_packets = -(-self.content_size // self.packet_size)
        self._encryptor = crypto.CbcEncryptor(key)
        self._cksum = Cksum()
        self._chunks: deque[Piece] = deque()  # ciphertext not yet framed
        self._offset = 0  # bytes of the first chunk already framed
        self._buffered = 0  # ciphertext bytes in the chunks, less the offset
        self._next_number = 1
        self.bytes_sent = 0  # ciphertext bytes framed so far
        self._client_id = session.client_id

    def feed(self, plaintext: bytes) -> list[bytes]:
        """Frames that are complete after these bytes of the file."""
        return _join_frames(self.feed_pieces(plaintext))

    def finish(self) -> list[bytes]:
        """The last frames; the session then waits for the server's CRC."""
        return _join_frames(self.finish_pieces())

    def feed_pieces(
        self,
        plaintext: bytes | bytearray | memoryview,
        out: bytearray | memoryview | None = None,
    ) -> list[Piece]:
        """``feed`` as pieces. ``plaintext`` is not kept: its buffer may be reused.

        With ``out`` (room for ``len(plaintext) + 16`` bytes), the ciphertext is written
        there and the packets' contents are views of it: send them before reusing ``out``.
        A driver that reuses one ``out`` for the whole file allocates nothing per piece.
        """
        if self._cksum.length + len(plaintext) > self.size:
            raise ValueError("the file grew while it was being sent")
        self._cksum.update(plaintext)
        if out is None:
            with memoryview(plaintext) as view:
                for start in range(0, len(view), ENCRYPT_PIECE):
                    self._add(self._encryptor.update(view[start : start + ENCRYPT_PIECE]))
            return self._frames(final=False)
        count = self._encryptor.update_into(plaintext, out)
        if count:
            self._add(memoryview(out)[:count])
        pieces = self._frames(final=False)
        self._detach()
        return pieces

    def _detach(self) -> None:
        """Copy what is left unframed out of the caller's buffer, which it will reuse."""
        if not any(isinstance(chunk, memoryview) for chunk in self._chunks):
            return
        first = memoryview(self._chunks[0])[self._offset :]
        rest = b"".join([first, *list(self._chunks)[1:]])
        self._chunks = deque([rest])
        self._offset = 0

    def finish_pieces(self) -> list[Piece]:
        if self._cksum.length != self.size:
            raise ValueError(
                f"the file changed while it was being sent ({self._cksum.length} of {self.size})"
            )
        self._add(self._encryptor.finalize())
        pieces = self._frames(final=True)
        assert self._next_number == self.total_packets + 1
        self._session._file_sent(self._cksum.value)
        return pieces

    @property
    def cksum(self) -> int:
        return self._cksum.value

    def _add(self, ciphertext: Piece) -> None:
        if ciphertext:
            self._chunks.append(ciphertext)
            self._buffered += len(ciphertext)

    def _take(self, size: int) -> Piece:
        """The next ``size`` bytes of ciphertext; no copy when they lie in one chunk."""
        first = self._chunks[0]
        left = len(first) - self._offset
        if left >= size:
            if self._offset == 0 and left == size:
                piece: Piece = self._chunks.popleft()
            else:
                piece = memoryview(first)[self._offset : self._offset + size]
                self._offset += size
                if self._offset == len(first):
                    self._chunks.popleft()
                    self._offset = 0
            self._buffered -= size
            return piece
        parts = bytearray()
        while len(parts) < size:
            first = self._chunks[0]
            want = size - len(parts)
            end = min(len(first), self._offset + want)
            parts += memoryview(first)[self._offset : end]
            if end == len(first):
                self._chunks.popleft()
                self._offset = 0
            else:
                self._offset = end
        self._buffered -= size
        return bytes(parts)

    def _frames(self, *, final: bool) -> list[Piece]:
        pieces: list[Piece] = []
        size = self.packet_size
        while self._buffered >= size or (final and self._buffered):
            content = self._take(min(size, self._buffered))
            header = PacketHeader(
                self._client_id,
                self.content_size,
                self.size,
                self._next_number,
                self.total_packets,
                self.file_name,
            )
            pieces += (header.encode_frame_start(len(content)), content)
            self._next_number += 1
            self.bytes_sent += len(content)
        return pieces


def _join_frames(pieces: list[Piece]) -> list[bytes]:
    """Header and content pairs back into whole frames."""
    return [b"".join(pieces[i : i + 2]) for i in range(0, len(pieces), 2)]
