"""A stateful property test of ``ServerSession``: random valid and invalid request streams.

Hypothesis drives one client connection after another (sharing one registry), each
through a real ``RequestParser``, with registrations, keys, reconnects, file attempts
(valid, or with a fault: numbers skipped, repeated, swapped, totals changing, garbage
or bit-flipped content, bad padding, too much or too little content, another client's
id...), random single packets, verdicts, junk frames, framing errors, lost connections
and storage failures at commit. A tiny driver carries out the effects the way
``eft_server.connection`` does, and after every event the invariants are checked:

* ``handle`` never raises: every problem becomes a ``Rejected`` effect;
* the state is always a ``State``;
* every ``Send`` is a valid response: it encodes, decodes back equal, and names the
  connection's client;
* client names are unique in the registry, and every stored public key is valid;
* a fixed-size request gets exactly one answer (a 901 at most one); packet events only
  ever answer an attempt, and an attempt is answered at most once;
* a ``CommitFile`` comes only for a 900 whose file's complete attempt was answered with
  1603 (and nothing since), and commits exactly what was written and checksummed;
* a failed attempt, a 901, a storage failure and a lost connection leave no temporary
  file open (``DiscardFile``); ``BeginFile`` never finds one open.

Storage failures are injected at commit and at the durable write before a response;
a failure while an attempt is still streaming is a known bug, reproduced on its own in
``tests/faults/test_disk_full.py``.

``EFT_STATEFUL_EXAMPLES=2000 .venv/bin/pytest tests/protocol/test_server_session_stateful.py``
runs it longer.
"""

from __future__ import annotations

import itertools
import os
import random
from dataclasses import dataclass, field

from Crypto.Cipher import AES
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from eft_protocol import crypto, errors
from eft_protocol import server_session as ss
from eft_protocol.cksum import cksum
from eft_protocol.codes import PACKET_FIELDS, REQUEST_HEADER, RequestCode, ResponseCode
from eft_protocol.names import storage_name
from eft_protocol.parser import (
    NEED_DATA,
    PacketContent,
    PacketStarted,
    ParserLimits,
    RequestEvent,
    RequestParser,
    RequestReceived,
    RequestRejected,
    ResponseParser,
)
from eft_protocol.registry import MemoryRegistry
from eft_protocol.wire import (
    FileReceived,
    PublicKeyAccepted,
    ReconnectDenied,
    Reconnected,
)
from tests.hostile.helpers import der_with_exponent_3, field255, shared_key
from tests.support.examples import examples

VALID_KEYS: set[bytes] = set()  # public keys already checked (parsing one costs ~1 ms)
EXAMPLES = int(os.environ.get("EFT_STATEFUL_EXAMPLES", examples(150)))
MAX_FILE = 256  # small, so that some generated files are over the limit
NAMES = ["ann", "bob", "cy", "dee"]
FILE_NAMES = ["a.txt", "b.bin", "dir/a.txt", "C:\\x\\b.bin", "..", "CON", "x" * 200, "ok.dat"]
FAULTS = [
    "none",
    "none",
    "none",
    "none",
    "skip_packet",
    "repeat_packet",
    "swap_order",
    "change_total",
    "garbage",
    "flip_bit",
    "bad_padding",
    "extra_content",
    "missing_content",
    "stop_early",
    "other_id",
    "per_packet_sizes",
    "wrong_declared_size",
    "bad_name_mid_file",
]


def frame(code: int, payload: bytes, client_id: bytes, version: int = 3) -> bytes:
    return REQUEST_HEADER.pack(client_id, version, code, len(payload)) + payload


def packet_frame(
    client_id: bytes,
    name: bytes,
    content: bytes,
    number: int,
    total: int,
    content_size: int,
    orig_size: int,
) -> bytes:
    fields = PACKET_FIELDS.pack(
        content_size & 0xFFFFFFFF, orig_size & 0xFFFFFFFF, number, total, field255(name[:255])
    )
    return frame(RequestCode.SEND_FILE, fields + content, client_id)


def event_label(label: str) -> None:
    """Counted by Hypothesis: ``--hypothesis-show-statistics`` shows what a run reached."""
    event(label)


@dataclass
class Connection:
    """What the simulated client knows about its connection."""

    client_id: bytes = bytes(16)
    name: str | None = None
    aes_key: bytes | None = None
    last_file: str = "a.txt"


@dataclass
class Driver:
    """What ``eft_server.connection`` would hold: the temporary file and what was committed."""

    temp_open: bool = False
    written: bytearray = field(default_factory=bytearray)
    committed: dict[tuple[bytes, str], bytes] = field(default_factory=dict)
    # The last answer that ended an attempt on this connection: ("1603", storage, cksum) or
    # ("1607", ...), and the 828 events seen since it.
    last_attempt_answer: tuple[str, str | None, int | None] | None = None
    packet_events_since_answer: int = 0
    began_since_answer: bool = False  # the attempt being answered opened a temporary file
    # The temporary file's attempt was answered 1603 (storage name, cksum): a verdict may
    # commit it. Cleared when the file is discarded or a new attempt begins.
    awaiting_verdict: tuple[str, int] | None = None
    fail_next: str | None = None  # "commit" or "durable"


class ServerSessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.registry = MemoryRegistry()
        self._ids = itertools.count(1)
        self.now = 0.0
        self.answer_crc_retry = False
        self.keyed: list[tuple[bytes, str]] = []  # clients that completed a key exchange
        self.registered: list[tuple[bytes, str]] = []
        self.rng = random.Random(0)
        self._open_connection()

    # --- the connection and its driver ---------------------------------------------

    def _open_connection(self) -> None:
        self.session = ss.ServerSession(
            self.registry,
            limits=ss.ServerLimits(max_file_size=MAX_FILE),
            answer_crc_retry=self.answer_crc_retry,
            new_client_id=lambda: next(self._ids).to_bytes(16, "big"),
        )
        self.parser = RequestParser(ParserLimits(max_packet_payload=PACKET_FIELDS.size + 4096))
        self.conn = Connection()
        self.driver = Driver(committed=getattr(self, "driver", Driver()).committed)

    def _lose_connection(self) -> None:
        self._apply(None, self.session.connection_lost())
        assert not self.driver.temp_open, "a lost connection left its temporary file"
        self._open_connection()

    def feed(self, *frames: bytes) -> None:
        for data in frames:
            self.parser.receive_data(data)
            while True:
                try:
                    event = self.parser.next_event()
                except errors.FramingError:
                    self._lose_connection()  # the driver answers 1607 and closes
                    return
                except errors.ProtocolError as exc:  # pragma: no cover - a parser bug
                    raise AssertionError(
                        f"a non-framing error escaped the parser: {exc!r}"
                    ) from exc
                if event is NEED_DATA:
                    break
                self.now += 0.5
                effects = self.session.handle(event, self.now)  # must never raise
                self._apply(event, effects)

    def _apply(self, event: RequestEvent | None, effects: list[ss.Effect]) -> None:
        driver = self.driver
        is_packet = isinstance(event, PacketStarted) or (
            isinstance(event, RequestRejected) and event.header.code == RequestCode.SEND_FILE
        )
        if is_packet:
            driver.packet_events_since_answer += 1
        attempt_answers = other_answers = 0
        failed_attempt = False
        rejected_request = False
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            if isinstance(effect, ss.Send):
                if driver.fail_next == "durable" and not isinstance(effect.response, FileReceived):
                    driver.fail_next = None
                    queue = self.session.storage_failed("OSError")
                    continue
                self._check_response(effect)
                event_label(f"sent {int(effect.response.code)}")
                if isinstance(effect.response, FileReceived):
                    attempt_answers += 1
                    assert is_packet or isinstance(event, PacketContent) or event is not None
                    self._attempt_answered(
                        ("1603", storage_name(effect.response.file_name), effect.response.cksum)
                    )
                    assert driver.temp_open, "1603 without the file it describes"
                    assert effect.response.cksum == cksum(bytes(driver.written))
                    driver.awaiting_verdict = (
                        storage_name(effect.response.file_name),
                        effect.response.cksum,
                    )
                else:
                    other_answers += 1
            elif isinstance(effect, ss.Rejected):
                assert isinstance(effect.error, errors.ProtocolError)
                assert effect.error.response_code is ResponseCode.SERVER_ERROR
                assert not effect.error.fatal, "only the driver closes connections"
                assert effect.response.encode() == bytes.fromhex("03470600000000")
                event_label(f"rejected: {effect.error.reason}")
                if effect.request_code == RequestCode.SEND_FILE:
                    attempt_answers += 1
                    failed_attempt = driver.began_since_answer
                    self._attempt_answered(("1607", None, None))
                else:
                    other_answers += 1
                    rejected_request = True
            elif isinstance(effect, ss.BeginFile):
                assert not driver.temp_open, "BeginFile with a temporary file still open"
                assert effect.client_id == self.session.client_id
                assert storage_name(effect.storage_name) == effect.storage_name
                driver.temp_open = True
                driver.began_since_answer = True
                driver.awaiting_verdict = None
                driver.written = bytearray()
            elif isinstance(effect, ss.WriteFile):
                assert driver.temp_open, "WriteFile without BeginFile"
                driver.written += effect.data
            elif isinstance(effect, ss.DiscardFile):
                driver.temp_open = False
                driver.awaiting_verdict = None
            elif isinstance(effect, ss.CommitFile):
                self._check_commit(event, effect)
                if driver.fail_next == "commit":
                    driver.fail_next = None
                    driver.temp_open = False  # TempUpload.commit discards on failure
                    driver.awaiting_verdict = None
                    queue = self.session.storage_failed("OSError")
                    continue
                event_label("committed")
                driver.committed[(effect.client_id, effect.storage_name)] = bytes(driver.written)
                driver.temp_open = False
                driver.awaiting_verdict = None
            else:
                assert isinstance(effect, ss.Notice)
        if isinstance(event, RequestReceived | RequestRejected) and not is_packet:
            code = event.request.code if isinstance(event, RequestReceived) else event.header.code
            if code == RequestCode.CRC_RETRY and isinstance(event, RequestReceived):
                assert other_answers <= 1
            else:
                assert other_answers == 1, f"{other_answers} answers to one {code}"
        elif event is not None:
            assert other_answers == 0, "a packet event answered something else"
        assert attempt_answers <= 1
        retry_accepted = (
            isinstance(event, RequestReceived)
            and event.request.code == RequestCode.CRC_RETRY
            and not rejected_request
        )
        if failed_attempt or retry_accepted:
            assert not driver.temp_open, "a failed or refused attempt kept its temporary file"
        if failed_attempt:
            event_label("failed attempt discarded its file")

    def _attempt_answered(self, answer: tuple[str, str | None, int | None]) -> None:
        driver = self.driver
        assert driver.packet_events_since_answer >= 1, "an attempt was answered twice"
        driver.packet_events_since_answer = 0
        driver.began_since_answer = False
        driver.last_attempt_answer = answer

    def _check_commit(self, event: RequestEvent | None, effect: ss.CommitFile) -> None:
        driver = self.driver
        assert isinstance(event, RequestReceived), "CommitFile for something other than 900"
        assert event.request.code == RequestCode.CRC_OK
        assert driver.temp_open, "CommitFile without a temporary file"
        answer = driver.awaiting_verdict
        assert answer is not None, "CommitFile for an attempt that was not answered 1603"
        assert answer[0] == effect.storage_name == storage_name(event.request.file_name)
        assert answer[1] == effect.cksum == cksum(bytes(driver.written))
        assert effect.size == len(driver.written)
        assert effect.client_id == self.session.client_id == event.request.client_id

    def _check_response(self, effect: ss.Send) -> None:
        response = effect.response
        parser = ResponseParser()
        parser.receive_data(response.encode())
        assert parser.next_event() == response
        assert not parser.in_frame
        if isinstance(response, ReconnectDenied):
            return
        client_id = getattr(response, "client_id", None)
        if client_id is not None:
            assert client_id == self.session.client_id
        if isinstance(response, PublicKeyAccepted | Reconnected):
            aes_key = crypto.unwrap_aes_key(shared_key(), response.encrypted_aes_key)
            record = self.registry.client_by_id(response.client_id)
            assert record is not None and record.aes_key == aes_key
            self.conn.aes_key, self.conn.client_id = aes_key, response.client_id
            self.conn.name = record.name
            if (record.client_id, record.name) not in self.keyed:
                self.keyed.append((record.client_id, record.name))
        elif response.code is ResponseCode.REGISTERED:
            self.conn.client_id = response.client_id  # type: ignore[union-attr]
            record = self.registry.client_by_id(self.conn.client_id)
            assert record is not None
            self.conn.name = record.name
            self.registered.append((record.client_id, record.name))

    # --- rules ----------------------------------------------------------------------

    @initialize(answer=st.booleans(), seed=st.integers(0, 2**16), start=st.booleans())
    def configure(self, answer: bool, seed: int, start: bool) -> None:
        self.answer_crc_retry = answer
        self.session.answer_crc_retry = answer
        self.rng = random.Random(seed)
        if start:
            self.good_handshake()

    @rule()
    def good_handshake(self) -> None:
        """A new connection of a new client: 825, then a valid 826."""
        self._lose_connection()
        name = f"user{len(self.registered)}"
        self.feed(frame(825, field255(name.encode()), bytes(16)))
        if self.conn.name == name:
            der = crypto.public_key_der(shared_key())
            self.feed(frame(826, field255(name.encode()) + der, self.conn.client_id))

    @precondition(lambda self: self.conn.aes_key is not None)
    @rule(
        file_name=st.sampled_from(FILE_NAMES[:4]),
        size=st.integers(0, 300),
        packet_size=st.sampled_from([16, 48, 4096]),
    )
    def good_file(
        self, file_name: str, size: int, packet_size: int, verdict: int | None = None
    ) -> None:
        """A valid attempt, then the verdict a spec client would give (or ``verdict``)."""
        before = self.session.state
        plain = self.rng.randbytes(size)
        key = self.conn.aes_key
        assert key is not None
        cipher = crypto.encrypt_file_bytes(key, plain)
        pieces = [cipher[i : i + packet_size] for i in range(0, len(cipher), packet_size)]
        self.conn.last_file = file_name
        self.feed(
            *(
                packet_frame(
                    self.conn.client_id,
                    file_name.encode(),
                    content,
                    index + 1,
                    len(pieces),
                    len(cipher),
                    size,
                )
                for index, content in enumerate(pieces)
            )
        )
        answer = self.driver.last_attempt_answer
        if answer is None or answer[0] != "1603" or self.driver.packet_events_since_answer:
            return
        # From READY, a good file must be taken as sent.
        if before is ss.State.READY:
            assert answer[2] == cksum(plain)
        if verdict is None:
            verdict = 900 if answer[2] == cksum(plain) else 901
        failing = self.driver.fail_next is not None
        self.feed(frame(verdict, field255(file_name.encode()), self.conn.client_id))
        if verdict == 900 and before is ss.State.READY and not failing:
            stored = self.driver.committed[(self.conn.client_id, storage_name(file_name))]
            assert stored == plain, "a verified file was not stored as sent"

    @precondition(lambda self: self.conn.aes_key is not None)
    @rule(attempts=st.integers(4, 6))
    def stubborn_client(self, attempts: int) -> None:
        """The same file again and again, each time answered 901 (a CRC mismatch)."""
        for _ in range(attempts):
            self.good_file("again.bin", 40, 16, verdict=901)

    @rule(name=st.sampled_from(NAMES))
    def register(self, name: str) -> None:
        self.feed(frame(825, field255(name.encode()), self.rng.randbytes(16)))

    @rule(
        whose=st.sampled_from(["own", "registered", "keyed", "random"]),
        key=st.sampled_from(["good", "good", "e3", "garbage"]),
        right_name=st.booleans(),
    )
    def send_key(self, whose: str, key: str, right_name: bool) -> None:
        client_id, name = self.conn.client_id, self.conn.name or "ann"
        pool = {"registered": self.registered, "keyed": self.keyed}.get(whose)
        if pool:
            client_id, name = self.rng.choice(pool)
        elif whose == "random":
            client_id = self.rng.randbytes(16)
        if not right_name:
            name = "zed"
        der = {
            "good": crypto.public_key_der(shared_key()),
            "e3": der_with_exponent_3(),
            "garbage": self.rng.randbytes(160),
        }[key]
        self.feed(frame(826, field255(name.encode()) + der, client_id))

    @rule(known=st.booleans(), right_name=st.booleans())
    def reconnect(self, known: bool, right_name: bool) -> None:
        client_id, name = self.rng.randbytes(16), "ann"
        if known and self.keyed:
            client_id, name = self.rng.choice(self.keyed)
        elif known and self.registered:
            client_id, name = self.rng.choice(self.registered)
        self.feed(frame(827, field255((name if right_name else "zed").encode()), client_id))

    @rule(
        file_name=st.sampled_from(FILE_NAMES),
        size=st.integers(0, 300),
        packet_size=st.sampled_from([16, 32, 48, 4096]),
        numbering=st.sampled_from(["normal", "normal", "zero_based", "swapped"]),
        fault=st.sampled_from(FAULTS),
    )
    def send_file(
        self, file_name: str, size: int, packet_size: int, numbering: str, fault: str
    ) -> None:
        rng = self.rng
        self.conn.last_file = file_name
        plain = rng.randbytes(size)
        key = self.conn.aes_key or rng.randbytes(32)
        cipher = bytearray(crypto.encrypt_file_bytes(key, plain))
        content_size, orig_size = len(cipher), size
        if fault == "bad_padding":
            cipher = bytearray(AES.new(key, AES.MODE_CBC, iv=bytes(16)).encrypt(bytes(16)))
            content_size, orig_size = 16, 0
        elif fault == "garbage":
            cipher = bytearray(rng.randbytes(len(cipher)))
        elif fault == "flip_bit":
            cipher[rng.randrange(len(cipher))] ^= 1 << rng.randrange(8)
        elif fault == "extra_content":
            cipher += rng.randbytes(16)
        elif fault == "missing_content" and len(cipher) > 16:
            del cipher[-16:]
        pieces = [bytes(cipher[i : i + packet_size]) for i in range(0, len(cipher), packet_size)]
        total = len(pieces)
        first = 0 if numbering == "zero_based" else 1
        frames = []
        client_id = rng.randbytes(16) if fault == "other_id" else self.conn.client_id
        for index, content in enumerate(pieces):
            number = first + index
            sent_total = total
            if fault == "change_total" and index == total - 1:
                sent_total = total + 1
            a, b = number, sent_total
            if numbering == "swapped":
                a, b = sent_total, number
            c_size, o_size = content_size, orig_size
            if fault == "per_packet_sizes":
                c_size, o_size = len(content), max(len(content) - 1, 0)
            elif fault == "wrong_declared_size":
                c_size, o_size = content_size + 16, orig_size + 16
            name = file_name.encode()
            if fault == "bad_name_mid_file" and index == total // 2:
                name = b"bad\x01name"
            frames.append(packet_frame(client_id, name, content, a, b, c_size, o_size))
        if fault == "skip_packet" and len(frames) > 1:
            del frames[rng.randrange(len(frames) - 1)]
        elif fault == "repeat_packet":
            index = rng.randrange(len(frames))
            frames.insert(index, frames[index])
        elif fault == "swap_order" and len(frames) > 1:
            frames[0], frames[-1] = frames[-1], frames[0]
        elif fault == "stop_early" and len(frames) > 1:
            frames = frames[: rng.randrange(1, len(frames))]
        self.feed(*frames)

    @rule(
        number=st.integers(0, 0xFFFF),
        total=st.integers(0, 0xFFFF),
        content_size=st.integers(0, 0xFFFFFFFF),
        orig_size=st.integers(0, 0xFFFFFFFF),
        content=st.binary(max_size=64),
        own_id=st.booleans(),
    )
    def random_packet(
        self,
        number: int,
        total: int,
        content_size: int,
        orig_size: int,
        content: bytes,
        own_id: bool,
    ) -> None:
        client_id = self.conn.client_id if own_id else self.rng.randbytes(16)
        self.feed(
            packet_frame(client_id, b"r.bin", content, number, total, content_size, orig_size)
        )

    @rule(
        code=st.sampled_from([900, 900, 901, 902]),
        same_file=st.booleans(),
        own_id=st.booleans(),
    )
    def verdict(self, code: int, same_file: bool, own_id: bool) -> None:
        name = self.conn.last_file if same_file else self.rng.choice(FILE_NAMES)
        client_id = self.conn.client_id if own_id else self.rng.randbytes(16)
        self.feed(frame(code, field255(name.encode()), client_id))

    @rule(
        kind=st.sampled_from(["unknown_code", "wrong_size", "bad_string", "short_828"]),
        payload=st.binary(max_size=600),
    )
    def junk_frame(self, kind: str, payload: bytes) -> None:
        cid = self.conn.client_id
        if kind == "unknown_code":
            self.feed(frame(self.rng.choice([0, 1, 829, 903, 1600, 0xFFFF]), payload, cid))
        elif kind == "wrong_size":
            code = self.rng.choice([825, 826, 827, 900, 901, 902])
            if len(payload) in (255, 415):
                payload += b"!"
            self.feed(frame(code, payload, cid))
        elif kind == "bad_string":
            code = self.rng.choice([825, 827, 900, 901, 902])
            self.feed(frame(code, b"\x01" * 255, cid))
        else:
            self.feed(frame(828, payload[: PACKET_FIELDS.size - 1], cid))

    @rule(version=st.sampled_from([0, 2, 4, 255]))
    def framing_error(self, version: int) -> None:
        self.feed(frame(825, field255(b"ann"), bytes(16), version=version))

    @rule()
    def lose_connection(self) -> None:
        self._lose_connection()

    @rule(where=st.sampled_from(["commit", "durable"]))
    def storage_will_fail(self, where: str) -> None:
        self.driver.fail_next = where

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def state_is_a_state(self) -> None:
        assert isinstance(self.session.state, ss.State)

    @invariant()
    def names_are_unique_and_keys_valid(self) -> None:
        clients = self.registry.clients()
        assert len({record.name for record in clients}) == len(clients)
        for record in clients:
            assert self.registry.client_by_name(record.name) == record
            if record.public_key is not None and record.public_key not in VALID_KEYS:
                crypto.load_public_key(record.public_key)  # raises if it is not valid
                VALID_KEYS.add(record.public_key)


ServerSessionMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_server_session_state_machine = ServerSessionMachine.TestCase
