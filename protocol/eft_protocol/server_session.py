"""The server's side of one connection, as a state machine with no I/O.

Feed it the parser's events with ``handle(event, now)``; it answers with a list of
effects (send this response, write these plaintext bytes, commit this file, ...) that the
driver carries out in order. If carrying out a storage effect fails, the driver calls
``storage_failed`` and sends what that returns.

Rules this file enforces, beyond the spec's happy path:

* A connection is one client. Once it has registered or reconnected, every request must
  carry that client id; nobody else's files can be touched from here.
* The AES key belongs to the connection. A reconnect elsewhere under the same id issues a
  new key there but does not change the key this connection decrypts with.
* One reply per file attempt. If a packet is bad, the rest of that attempt is read and
  dropped, and a single 1607 answers it once its last packet has arrived.
* A file becomes visible only when the client confirms it (900); until then it is a
  temporary file, and a previous version under the same name stays intact.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

from . import crypto, errors
from .codes import (
    AES_BLOCK_SIZE,
    RequestCode,
    padded_size,
)
from .names import storage_name
from .notices import (
    ClientReconnected,
    ClientRegistered,
    KeyExchanged,
    NameRefused,
    Notice,
    ReconnectRefused,
    StorageFailure,
)
from .parser import (
    PacketContent,
    PacketFinished,
    PacketStarted,
    RequestEvent,
    RequestReceived,
    RequestRejected,
)
from .registry import ClientRecord, ClientRegistry, registration_refusal
from .server_table import (
    ALLOWED,
    TRANSITIONS,
    BeginFile,
    CommitFile,
    DiscardFile,
    Effect,
    Outcome,
    Rejected,
    Send,
    ServerLimits,
    State,
    WriteFile,
)
from .upload_attempt import (
    Upload,
    is_packet_event,
    request_code,
    sent_numbers,
    transfer_notice,
)
from .wire import (
    Acknowledged,
    CrcGiveUpRequest,
    CrcOkRequest,
    CrcRetryRequest,
    FileReceived,
    PacketHeader,
    PublicKeyAccepted,
    PublicKeyRequest,
    ReconnectDenied,
    Reconnected,
    ReconnectRequest,
    Registered,
    RegisterRequest,
    RegistrationFailed,
    Request,
)

__all__ = [
    "ALLOWED",
    "TRANSITIONS",
    "BeginFile",
    "CommitFile",
    "DiscardFile",
    "Effect",
    "Notice",
    "Outcome",
    "Rejected",
    "Send",
    "ServerLimits",
    "ServerSession",
    "State",
    "WriteFile",
]

#: The smallest plaintext buffer a session allocates; it grows to the largest piece seen.
_MIN_PLAINTEXT_BUFFER = 64 * 1024


class ServerSession:
    def __init__(
        self,
        registry: ClientRegistry,
        *,
        limits: ServerLimits | None = None,
        answer_crc_retry: bool = False,
        randfunc: crypto.RandFunc | None = None,
        new_client_id: Callable[[], bytes] | None = None,
        plaintext_buffer: bytearray | None = None,
    ) -> None:
        self.registry = registry
        self.limits = limits or ServerLimits()
        #: Section 8: answer 901 with 1604 for the clients that wait for one.
        self.answer_crc_retry = answer_crc_retry
        self._randfunc = randfunc
        self._new_client_id = new_client_id or (lambda: uuid.uuid4().bytes)
        self.state = State.IDLE
        self.client_id: bytes | None = None
        self.name: str | None = None
        self._aes_key: bytes | None = None
        self._upload: Upload | None = None
        self._attempt_open = False  # BeginFile sent, the attempt not yet complete
        # A failed attempt whose remaining packets are being dropped; its error answers it.
        self._failed_attempt: errors.ProtocolError | None = None
        self._packet_is_last = False  # the packet being read ends its attempt
        # Plaintext is decrypted into a reused buffer: a fresh allocation per piece cost
        # page faults and copies (docs/PERFORMANCE.md). A driver that writes each
        # WriteFile before handling another event, on any session, may share one buffer
        # between all its sessions (memory then does not grow with the connections).
        self._plaintext = plaintext_buffer if plaintext_buffer is not None else bytearray()

    @property
    def has_key(self) -> bool:
        """True once the client holds an AES key: the handshake is over."""
        return self._aes_key is not None

    # --- entry points ---------------------------------------------------------------

    def handle(self, event: RequestEvent, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self._failed_attempt is not None:
            if is_packet_event(event):
                return self._discard(event)
            effects += self._answer_failed_attempt()
        try:
            effects += self._dispatch(event, now)
        except errors.ProtocolError as exc:
            effects += self._fail(exc, event)
        return effects

    def storage_failed(self, reason: str, *, detail: str = "") -> list[Effect]:
        """The driver could not carry out a storage effect (disk full, I/O error);
        ``detail`` says how, for the log.

        Inside an attempt whose packets are still arriving, the rest of the attempt is
        dropped and one 1607 answers it after its last packet, as for a bad packet.
        """
        error = errors.StorageFailed(reason)
        notice = StorageFailure({"reason": reason, "detail": detail or reason})
        effects: list[Effect] = [DiscardFile(), notice]
        if self._attempt_open:
            self._attempt_open = False
            self._advance(Outcome.ATTEMPT_FAILED)
            self._failed_attempt = error
            return effects
        self._upload = None
        self.state = State.READY if self._aes_key else State.IDLE
        return [*effects, Rejected(error, None)]

    def registration_lost(self) -> list[Effect]:
        """The registration just answered (not yet sent) did not hold: the registry
        found, when writing it, that the name was taken meanwhile (another server
        sharing the database registered it first). Answered as a taken name: 1601.

        Only right after the 825: a name lost later (the 826's write found the row
        gone and the name taken again) is the registry refusing a write, as any other."""
        if self.state is not State.REGISTERED:
            return self.storage_failed("name_taken_meanwhile")
        name, self.client_id, self.name = self.name, None, None
        self.state = State.IDLE  # not a request's outcome: the table has no such step
        refused = NameRefused({"name": name, "reason": "taken_meanwhile"})
        return [refused, Send(RegistrationFailed())]

    def connection_lost(self) -> list[Effect]:
        """The peer went away. An unconfirmed upload is abandoned, never committed."""
        if self._upload is None:
            return []
        upload, self._upload = self._upload, None
        return [DiscardFile(), transfer_notice("aborted", upload)]

    # --- dispatch -------------------------------------------------------------------

    def _dispatch(self, event: RequestEvent, now: float) -> list[Effect]:
        if isinstance(event, RequestReceived):
            return self._request(event.request, now)
        if isinstance(event, PacketStarted):
            return self._packet_started(event.packet, now)
        if isinstance(event, PacketContent):
            return self._packet_content(event.data)
        if isinstance(event, PacketFinished):
            return self._packet_finished(now)
        if event.header.code == RequestCode.SEND_FILE:
            numbers = event.packet_numbers
            self._packet_is_last = numbers is None or self._is_last(*numbers)
        raise event.error

    def _request(self, request: Request, now: float) -> list[Effect]:
        self._check_allowed(request.code)
        if isinstance(request, RegisterRequest):
            return self._register(request, now)
        if isinstance(request, PublicKeyRequest):
            return self._public_key(request, now)
        if isinstance(request, ReconnectRequest):
            return self._reconnect(request, now)
        if isinstance(request, CrcOkRequest):
            return self._crc_ok(request, now)
        if isinstance(request, CrcRetryRequest):
            return self._crc_retry(request)
        return self._crc_give_up(request, now)

    def _check_allowed(self, code: RequestCode) -> None:
        if code not in ALLOWED[self.state]:
            raise errors.OutOfOrder(f"request {int(code)} is not valid in state {self.state.value}")

    def _advance(self, outcome: Outcome) -> None:
        self.state = TRANSITIONS[(self.state, outcome)]

    def _check_identity(self, client_id: bytes) -> None:
        if client_id != self.client_id:
            raise errors.ClientIdMismatch("the header's client id is not this connection's")

    # --- registration and keys -----------------------------------------------------

    def _register(self, request: RegisterRequest, now: float) -> list[Effect]:
        holder = self.registry.client_by_name(request.name)
        if (
            holder is not None
            and holder.public_key is None
            and now - holder.last_seen > self.limits.unfinished_registration
        ):
            self.registry.forget_client(holder.client_id)
            holder = None
        if holder is not None:
            self._advance(Outcome.NAME_TAKEN)
            return [
                NameRefused({"name": request.name}),
                Send(RegistrationFailed()),
            ]
        client_id = self._new_client_id()
        while self.registry.client_by_id(client_id) is not None:
            client_id = self._new_client_id()
        refusal = registration_refusal(
            self.registry, request.name, client_id, 3, now, token=request.token
        )
        if refusal is not None:  # the server's policy: 1601 is the refusal v3 knows
            self._advance(Outcome.NAME_TAKEN)
            return [
                NameRefused({"name": request.name, "reason": refusal}),
                Send(RegistrationFailed()),
            ]
        self.registry.save_client(ClientRecord(client_id, request.name, last_seen=now))
        self.client_id, self.name = client_id, request.name
        self._advance(Outcome.REGISTERED)
        return [ClientRegistered({"client_id": client_id.hex()}), Send(Registered(client_id))]

    def _public_key(self, request: PublicKeyRequest, now: float) -> list[Effect]:
        self._check_identity(request.client_id)
        record = self.registry.client_by_id(request.client_id)
        if record is None:
            raise errors.UnknownClient("826 from a client id that never registered")
        if record.name != request.name:
            raise errors.NameMismatch("826 names a different client than its id")
        if record.public_key is not None:
            raise errors.KeyAlreadySet("this client already sent its public key")
        public_key = crypto.load_public_key(request.public_key)
        aes_key = crypto.new_aes_key(self._randfunc)
        wrapped = crypto.wrap_aes_key(public_key, aes_key, self._randfunc)
        self.registry.save_client(
            replace(record, public_key=request.public_key, aes_key=aes_key, last_seen=now)
        )
        self.client_id, self.name, self._aes_key = record.client_id, record.name, aes_key
        self._advance(Outcome.KEY_ACCEPTED)
        return [KeyExchanged(), Send(PublicKeyAccepted(record.client_id, wrapped))]

    def _reconnect(self, request: ReconnectRequest, now: float) -> list[Effect]:
        record = self.registry.client_by_id(request.client_id)
        reason = None
        if record is None:
            reason = "unknown_client"
        elif record.public_key is None:
            reason = "no_public_key"
        elif record.name != request.name:
            reason = "name_mismatch"
        if record is None or record.public_key is None or reason is not None:
            self._advance(Outcome.RECONNECT_DENIED)
            return [
                ReconnectRefused({"reason": reason}),
                Send(ReconnectDenied(request.client_id)),
            ]
        aes_key = crypto.new_aes_key(self._randfunc)
        public_key = crypto.load_public_key(record.public_key)
        wrapped = crypto.wrap_aes_key(public_key, aes_key, self._randfunc)
        self.registry.save_client(replace(record, aes_key=aes_key, last_seen=now))
        self.client_id, self.name, self._aes_key = record.client_id, record.name, aes_key
        self._advance(Outcome.RECONNECTED)
        return [ClientReconnected(), Send(Reconnected(record.client_id, wrapped))]

    # --- file packets --------------------------------------------------------------

    def _packet_started(self, packet: PacketHeader, now: float) -> list[Effect]:
        self._packet_is_last = self._is_last(packet.packet_number, packet.total_packets)
        self._check_allowed(RequestCode.SEND_FILE)
        number, total = sent_numbers(packet.packet_number, packet.total_packets)
        self._check_identity(packet.client_id)
        effects: list[Effect] = []
        if self.state is not State.RECEIVING:
            effects += self._start_attempt(packet, number, total, now)
        upload = self._upload
        assert upload is not None
        if total != upload.total_packets:
            raise errors.BadPacket(f"total packets changed from {upload.total_packets} to {total}")
        if number != upload.next_number:
            raise errors.BadPacket(f"packet {number} arrived, expected {upload.next_number}")
        if upload.declared_cipher_size is not None and (
            packet.content_size != upload.declared_cipher_size
            or packet.orig_file_size != upload.declared_plain_size
        ):
            raise errors.BadPacket("the file's sizes changed between packets")
        upload.next_number += 1
        return effects

    def _start_attempt(
        self, packet: PacketHeader, number: int, total: int, now: float
    ) -> list[Effect]:
        if number not in (0, 1) or total == 0:
            raise errors.BadPacket(f"a file must start at packet 1 (or 0), not {number} of {total}")
        name = storage_name(packet.file_name)
        upload = self._upload
        if upload is None or upload.storage_name != name or self.state is State.READY:
            upload = Upload(packet.file_name, name, started=now)
        assert self._aes_key is not None
        upload.begin_attempt(packet, number, total, self._aes_key, self.limits)
        self._upload = upload
        self._attempt_open = True
        assert self.client_id is not None
        return [BeginFile(self.client_id, name)]

    def _packet_content(self, data: bytes) -> list[Effect]:
        upload = self._upload
        assert upload is not None and upload.decryptor is not None
        upload.received += len(data)
        limit = upload.declared_cipher_size
        if limit is None:
            limit = padded_size(self.limits.max_file_size)
        if upload.received > limit:
            raise errors.SizeMismatch(f"more than the {limit} bytes of ciphertext declared")
        need = len(data) + 2 * AES_BLOCK_SIZE
        if len(self._plaintext) < need:
            # A new buffer, never a resize: a view handed out earlier may still exist.
            self._plaintext = bytearray(max(need, _MIN_PLAINTEXT_BUFFER))
        buffer = self._plaintext
        count = upload.decryptor.update_into(data, buffer)
        return self._write(upload, memoryview(buffer)[:count])

    def _packet_finished(self, now: float) -> list[Effect]:
        upload = self._upload
        assert upload is not None and upload.decryptor is not None
        if upload.next_number - 1 != upload.last_number:
            self._advance(Outcome.PACKET)
            return []
        effects = self._write(upload, upload.decryptor.finalize())
        if upload.declared_cipher_size is not None and (
            upload.received != upload.declared_cipher_size
            or upload.plain_size != upload.declared_plain_size
        ):
            raise errors.SizeMismatch(
                f"received {upload.received} bytes of ciphertext, declared "
                f"{upload.declared_cipher_size}"
            )
        upload.final_cksum = upload.cksum.value
        assert self.client_id is not None
        self._attempt_open = False
        self._advance(Outcome.FILE_COMPLETE)
        return [
            *effects,
            transfer_notice("received", upload, now=now),
            Send(
                FileReceived(self.client_id, upload.received, upload.file_name, upload.final_cksum)
            ),
        ]

    def _write(self, upload: Upload, plaintext: bytes | memoryview) -> list[Effect]:
        if not plaintext:
            return []
        upload.cksum.update(plaintext)
        upload.plain_size += len(plaintext)
        return [WriteFile(plaintext)]

    # --- the client's verdict -------------------------------------------------------

    def _verdict_upload(self, client_id: bytes, file_name: str) -> Upload:
        self._check_identity(client_id)
        upload = self._upload
        assert upload is not None
        if storage_name(file_name) != upload.storage_name:
            raise errors.OutOfOrder(f"verdict for {file_name!r}, but {upload.file_name!r} was sent")
        return upload

    def _crc_ok(self, request: CrcOkRequest, now: float) -> list[Effect]:
        upload = self._verdict_upload(request.client_id, request.file_name)
        assert self.client_id is not None and upload.final_cksum is not None
        self._upload = None
        self._advance(Outcome.VERIFIED)
        return [
            CommitFile(self.client_id, upload.storage_name, upload.plain_size, upload.final_cksum),
            transfer_notice("verified", upload, now=now),
            Send(Acknowledged(self.client_id)),
        ]

    def _crc_retry(self, request: CrcRetryRequest) -> list[Effect]:
        upload = self._verdict_upload(request.client_id, request.file_name)
        assert self.client_id is not None
        effects: list[Effect] = []
        if self.state is State.AWAITING_VERDICT:
            effects += [DiscardFile(), transfer_notice("retried", upload)]
        self._advance(Outcome.RETRY)
        if self.answer_crc_retry:
            effects.append(Send(Acknowledged(self.client_id)))
        return effects

    def _crc_give_up(self, request: CrcGiveUpRequest, now: float) -> list[Effect]:
        upload = self._verdict_upload(request.client_id, request.file_name)
        assert self.client_id is not None
        self._upload = None
        self._advance(Outcome.GAVE_UP)
        return [
            DiscardFile(),
            transfer_notice("gave_up", upload, now=now),
            Send(Acknowledged(self.client_id)),
        ]

    # --- failures -------------------------------------------------------------------
    #
    # A spec client streams every packet of an attempt and only then reads one reply.
    # So a bad packet is not answered at once: the rest of its attempt is dropped and
    # one 1607 answers the attempt after its last packet, which the client then resends.

    def _is_last(self, number: int, total: int) -> bool:
        number, total = sent_numbers(number, total)
        upload = self._upload
        if self._attempt_open or self._failed_attempt is not None:
            zero_based = upload is not None and upload.zero_based
        else:
            zero_based = number == 0  # this packet would start an attempt
        return number == (total - 1 if zero_based else total)

    def _fail(self, error: errors.ProtocolError, event: RequestEvent) -> list[Effect]:
        if not is_packet_event(event):
            return [Rejected(error, request_code(event))]
        effects: list[Effect] = []
        if self._attempt_open:
            upload = self._upload
            assert upload is not None
            effects += [DiscardFile(), transfer_notice("error", upload, reason=error.reason)]
            self._attempt_open = False
            self._advance(Outcome.ATTEMPT_FAILED)
        self._failed_attempt = error
        attempt_over = isinstance(event, PacketFinished) or (
            isinstance(event, RequestRejected) and self._packet_is_last
        )
        if attempt_over:
            effects += self._answer_failed_attempt()
        return effects

    def _discard(self, event: RequestEvent) -> list[Effect]:
        """Drop one more piece of a failed attempt; answer once its last packet is in."""
        if isinstance(event, PacketStarted):
            packet = event.packet
            self._packet_is_last = self._is_last(packet.packet_number, packet.total_packets)
            return []
        if isinstance(event, PacketContent):
            return []
        if isinstance(event, RequestRejected):
            numbers = event.packet_numbers
            self._packet_is_last = numbers is None or self._is_last(*numbers)
        return self._answer_failed_attempt() if self._packet_is_last else []

    def _answer_failed_attempt(self) -> list[Effect]:
        error, self._failed_attempt = self._failed_attempt, None
        assert error is not None
        if self.state is State.READY:
            self._upload = None  # the next attempt starts afresh
        return [Rejected(error, RequestCode.SEND_FILE)]
