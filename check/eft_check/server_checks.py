"""``eft-check server``: the battery of sessions run against a server under test.

Each check opens its own connections under its own user names (a random prefix per run,
so a server's registry from earlier runs does not matter) and ends with a ``Result``.
One RSA key serves every registration of a run: generating one takes ~100 ms.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import struct
from collections.abc import Callable, Iterator

from eft_protocol import crypto, wire
from eft_protocol.cksum import cksum
from eft_protocol.codes import REQUEST_HEADER, VERSION, ResponseCode

from .probe import Closed, Probe
from .report import Finding, Frame, Report, Result, deviation, fail, trim
from .rules import SERVER_CHECKS
from .server_steps import (
    Identity,
    check_header,
    expect,
    handshake,
    judge_file_received,
    packets,
    receive_file_received,
    register,
    send_key,
    unwrap_key,
    verdict,
)

Check = Callable[[Result], None]
#: Where split-writes cuts a frame: inside the header twice, then through the payload.
SPLIT_AT = (1, 10, 23, 100, 200)


class ServerChecker:
    def __init__(
        self, address: tuple[str, int], timeout: float = 5.0, split_gap: float = 0.05
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.split_gap = split_gap
        self.rsa_key = crypto.generate_rsa_key()
        self.prefix = f"chk{secrets.token_hex(3)}"
        self.rng = random.Random(26)
        self._count = 0
        self._log: list[Frame] = []

    # --- plumbing ------------------------------------------------------------------

    def name(self) -> str:
        self._count += 1
        return f"{self.prefix}-{self._count}"

    @contextlib.contextmanager
    def connect(self) -> Iterator[Probe]:
        probe = Probe(self.address, self.timeout, self._log)
        try:
            yield probe
        finally:
            probe.close()

    def data(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def ready(self, probe: Probe) -> Identity:
        return handshake(probe, self.rsa_key, self.name())

    def run(self, only: set[str] | None = None) -> Report:
        report = Report(f"server {self.address[0]}:{self.address[1]}")
        for check_id, rule in SERVER_CHECKS.items():
            if only and check_id not in only:
                continue
            result = Result(rule)
            self._log = []
            check: Check = getattr(self, "check_" + check_id.replace("-", "_"))
            try:
                check(result)
            except Finding as finding:
                result.add(finding)
            except Closed as exc:
                result.add(fail("an answer on an open connection", f"the server closed ({exc})"))
            except OSError as exc:
                result.add(fail("a working connection", f"{type(exc).__name__}: {exc}"))
            result.frames = trim(self._log)
            report.results.append(result)
        return report

    def file_check(self, result: Result, size: int, packet_size: int = 4096) -> None:
        with self.connect() as probe:
            who = self.ready(probe)
            self.upload(
                probe, who, result, name="probe.bin", data=self.data(size), packet_size=packet_size
            )

    def attempt(
        self,
        probe: Probe,
        who: Identity,
        result: Result,
        *,
        name: str,
        data: bytes,
        packet_size: int,
        together: bool = False,
    ) -> None:
        """Send an attempt's packets (unless sent) and judge its 1603. When a file of
        several packets is refused, find out whether a known wrong form is accepted."""
        frames = packets(who, name, data, packet_size)
        try:
            if together:
                probe.send_together(*frames)
            else:
                probe.send(*frames)
            _, tolerated = receive_file_received(probe, who, name, data, len(frames))
        except (Finding, Closed) as exc:
            if len(frames) > 1:
                self.diagnose_multi_packet(data, packet_size)
            raise exc from None
        for finding in tolerated:
            result.add(finding)

    def upload(
        self,
        probe: Probe,
        who: Identity,
        result: Result,
        *,
        name: str,
        data: bytes,
        packet_size: int,
        together: bool = False,
    ) -> None:
        """One attempt and its 900."""
        self.attempt(
            probe, who, result, name=name, data=data, packet_size=packet_size, together=together
        )
        verdict(probe, who, name)

    def diagnose_multi_packet(self, data: bytes, packet_size: int) -> None:
        """A server that refuses one CBC stream in several packets: does it accept one
        of the known wrong forms instead? Raises the mistake if so."""
        for variant, mistake in (
            ("per_packet_cbc", "per-packet-cbc"),
            ("swapped", "swapped-packet-fields"),
        ):
            if self.accepts_variant(data, packet_size, variant):
                raise fail(
                    "one AES-CBC stream over the whole file, sliced into packets "
                    "that carry packet_number, then total_packets",
                    "refused; the same file in the wrong form was accepted",
                    mistake,
                )

    def accepts_variant(self, data: bytes, packet_size: int, variant: str) -> bool:
        # The report shows the refused attempt; this trial's frames are not kept.
        kept, self._log = self._log, []
        try:
            return self._accepts_variant(data, packet_size, variant)
        finally:
            self._log = kept

    def _accepts_variant(self, data: bytes, packet_size: int, variant: str) -> bool:
        with contextlib.suppress(Finding, OSError), self.connect() as probe:
            who = self.ready(probe)
            probe.send(*packets(who, "probe.bin", data, packet_size, **{variant: True}))
            answer = probe.receive()
            if answer.code == ResponseCode.FILE_RECEIVED:
                crc: int = struct.unpack_from("<I", answer.payload, 16 + 4 + 255)[0]
                return crc == cksum(data)
        return False

    # --- the checks ----------------------------------------------------------------

    def check_register(self, result: Result) -> None:
        with self.connect() as probe:
            register(probe, self.name())

    def check_duplicate_name(self, result: Result) -> None:
        name = self.name()
        with self.connect() as probe:
            register(probe, name)
        with self.connect() as probe:
            probe.send(wire.RegisterRequest(wire.ZERO_CLIENT_ID, name).encode())
            expect(probe, ResponseCode.REGISTRATION_FAILED)

    def check_public_key(self, result: Result) -> None:
        with self.connect() as probe:
            self.ready(probe)

    def check_reconnect_known(self, result: Result) -> None:
        with self.connect() as probe:
            who = self.ready(probe)
        with self.connect() as probe:
            probe.send(wire.ReconnectRequest(who.client_id, who.name).encode())
            answer = expect(probe, ResponseCode.RECONNECTED)
            unwrap_key(self.rsa_key, answer, who.client_id)

    def check_reconnect_unknown(self, result: Result) -> None:
        unknown = secrets.token_bytes(16)
        with self.connect() as probe:
            probe.send(wire.ReconnectRequest(unknown, self.name()).encode())
            answer = expect(probe, ResponseCode.RECONNECT_DENIED)
            if answer.payload != unknown:
                raise fail(f"1606 carrying {unknown.hex()}", answer.payload.hex())

    def check_file_0_bytes(self, result: Result) -> None:
        self.file_check(result, 0)

    def check_file_1_byte(self, result: Result) -> None:
        self.file_check(result, 1)

    def check_file_15_bytes(self, result: Result) -> None:
        self.file_check(result, 15)

    def check_file_16_bytes(self, result: Result) -> None:
        self.file_check(result, 16)

    def check_file_17_bytes(self, result: Result) -> None:
        self.file_check(result, 17)

    def check_many_packets(self, result: Result) -> None:
        self.file_check(result, 64 * 1024 - 5, packet_size=1024)

    def check_packet_size_1(self, result: Result) -> None:
        self.file_check(result, 40, packet_size=1)

    def check_packet_size_100(self, result: Result) -> None:
        self.file_check(result, 5000, packet_size=100)

    def check_packet_size_64k(self, result: Result) -> None:
        self.file_check(result, 200_000, packet_size=64 * 1024)

    def check_packet_size_1m(self, result: Result) -> None:
        self.file_check(result, 2_500_000, packet_size=1 << 20)

    def check_split_writes(self, result: Result) -> None:
        with self.connect() as probe:
            name = self.name()
            frame = wire.RegisterRequest(wire.ZERO_CLIENT_ID, name).encode()
            with one_recv_suspected("825"):
                probe.send_in_pieces(frame, SPLIT_AT, self.split_gap)
                client_id = expect(probe, ResponseCode.REGISTERED).payload
            who = Identity(name, client_id, send_key(probe, self.rsa_key, name, client_id))
            data = self.data(3000)
            (frame,) = packets(who, "split.bin", data, 4096)
            with one_recv_suspected("828"):
                probe.send_in_pieces(frame, SPLIT_AT, self.split_gap)
                _, tolerated = receive_file_received(probe, who, "split.bin", data, 1)
            for finding in tolerated:
                result.add(finding)
            verdict(probe, who, "split.bin")

    def check_coalesced_writes(self, result: Result) -> None:
        with self.connect() as probe:
            who = self.ready(probe)
            self.upload(
                probe,
                who,
                result,
                name="together.bin",
                data=self.data(20_000),
                packet_size=1000,
                together=True,
            )

    def retry(self, probe: Probe, who: Identity, name: str, data: bytes, result: Result) -> None:
        """901 and the file again in one write, as a conforming client sends them; the
        next answer must be the new attempt's 1603."""
        frames = packets(who, name, data, 1000)
        probe.send_together(wire.CrcRetryRequest(who.client_id, name).encode(), *frames)
        early = 0
        answer = probe.receive()
        while answer.code == ResponseCode.ACKNOWLEDGED and early <= len(frames):
            early += 1
            answer = probe.receive()
        if early == 1:
            result.add(deviation("no answer to 901", "a 1604", "answers-901"))
        elif early > 1:
            raise fail("no answer to 901 nor to its packets", f"{early} 1604s", "answers-each-828")
        check_header(answer, ResponseCode.FILE_RECEIVED)
        for finding in judge_file_received(answer, who, name, data):
            result.add(finding)

    def check_crc_901(self, result: Result) -> None:
        with self.connect() as probe:
            who = self.ready(probe)
            data = self.data(2500)
            self.attempt(probe, who, result, name="retry.bin", data=data, packet_size=1000)
            self.retry(probe, who, "retry.bin", data, result)
            verdict(probe, who, "retry.bin")

    def check_crc_902(self, result: Result) -> None:
        with self.connect() as probe:
            who = self.ready(probe)
            data = self.data(100)
            self.attempt(probe, who, result, name="giveup.bin", data=data, packet_size=1000)
            for _ in range(3):
                self.retry(probe, who, "giveup.bin", data, result)
            verdict(probe, who, "giveup.bin", code=902)

    def check_unknown_file_900(self, result: Result) -> None:
        with self.connect() as probe:
            who = self.ready(probe)
            probe.send(wire.CrcOkRequest(who.client_id, "never-sent.bin").encode())
            expect(probe, ResponseCode.SERVER_ERROR)
            self.upload(probe, who, result, name="after.bin", data=self.data(10), packet_size=1000)

    def check_bad_requests(self, result: Result) -> None:
        with self.connect() as bystander, self.connect() as probe:
            other = self.ready(bystander)
            who = self.ready(probe)
            bad = [
                REQUEST_HEADER.pack(who.client_id, VERSION, 999, 4) + b"junk",  # unknown code
                REQUEST_HEADER.pack(who.client_id, VERSION, 900, 10) + bytes(10),  # wrong size
                wire.RegisterRequest(who.client_id, who.name).encode(),  # out of order
            ]
            for frame in bad:
                probe.send(frame)
                expect(probe, ResponseCode.SERVER_ERROR)
            self.upload(probe, who, result, name="still.bin", data=self.data(100), packet_size=1000)
            self.upload(
                bystander, other, result, name="other.bin", data=self.data(100), packet_size=1000
            )

    def check_name_with_directory(self, result: Result) -> None:
        with self.connect() as probe:
            who = self.ready(probe)
            name = "sub/dir/pathed.bin"
            data = self.data(50)
            probe.send(*packets(who, name, data, 1000))
            try:
                _, tolerated = receive_file_received(probe, who, name, data, 1)
            except Finding as refused:
                if refused.answer_code == ResponseCode.SERVER_ERROR:
                    raise deviation(
                        "1603 (the base name stored)", "1607", "refuses-path-name"
                    ) from None
                raise
            for finding in tolerated:
                result.add(finding)
            verdict(probe, who, name)

    def check_long_name(self, result: Result) -> None:
        with self.connect() as probe:
            who = self.ready(probe)
            self.upload(
                probe, who, result, name="n" * 250 + ".bin", data=self.data(30), packet_size=1000
            )

    def check_two_clients(self, result: Result) -> None:
        with self.connect() as first, self.connect() as second:
            a, b = self.ready(first), self.ready(second)
            data_a = self.data(5000)
            frames_a = packets(a, "a.bin", data_a, 1000)
            first.send(*frames_a[:2])
            self.upload(second, b, result, name="b.bin", data=self.data(3000), packet_size=1000)
            first.send(*frames_a[2:])
            _, tolerated = receive_file_received(first, a, "a.bin", data_a, len(frames_a))
            for finding in tolerated:
                result.add(finding)
            verdict(first, a, "a.bin")


@contextlib.contextmanager
def one_recv_suspected(what: str) -> Iterator[None]:
    """A frame sent in pieces that goes unanswered, gets 1607 or a hang-up was read
    with one recv; a named mistake in the answer is that mistake instead. A deviation:
    such a server works with clients that write each frame at once, as ours do, on
    networks that do not cut them."""
    try:
        yield
    except Finding as finding:
        if finding.mistake:
            raise
        expected = f"the {what} read whole although it came in pieces"
        raise deviation(expected, finding.got, "one-recv") from None
    except OSError as exc:
        expected = f"the {what} read whole although it came in pieces"
        raise deviation(expected, str(exc), "one-recv") from None


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{text!r}: give HOST:PORT")
    return host, int(port)
