"""A small version-3 client that conforms unless told to make a known mistake.

Run as a program, as ``eft-check client`` runs any client: in a directory holding
transfer.info, it registers (or reconnects with me.info), sends the file and follows
the CRC and 1607 rules. ``--quirk`` switches on one mistake seen in clients in the wild.
Packets carry 1024 bytes of ciphertext, so every file of the checks is several packets.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from eft_protocol import crypto, wire
from eft_protocol.cksum import cksum
from eft_protocol.codes import REQUEST_HEADER, RESPONSE_HEADER, ResponseCode
from eft_protocol.parser import NEED_DATA, ResponseParser

PACKET = 1024
QUIRKS = (
    "per-packet-cbc",
    "swapped-packet-fields",
    "payload-size-mismatch",
    "no-packet-for-empty-file",
    "waits-for-901-answer",
    "waits-for-828-answer",
    "plaintext-sizes",
    "one-recv",
    "zero-based-packets",
    "no-retry-after-1607",
)


class Failed(Exception):
    pass


class Client:
    def __init__(self, quirk: str | None) -> None:
        self.quirk = quirk
        lines = Path("transfer.info").read_text().splitlines()
        host, _, port = lines[0].rpartition(":")
        self.name, self.file = lines[1], Path(lines[2])
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.parser = ResponseParser()
        self.client_id = wire.ZERO_CLIENT_ID
        self.aes_key = b""

    def receive(self) -> wire.Response:
        if self.quirk == "one-recv":  # one recv for the header, one for the payload
            header = self.sock.recv(RESPONSE_HEADER.size)
            if len(header) < RESPONSE_HEADER.size:
                raise Failed(f"short header: {header.hex()}")
            version, code, size = RESPONSE_HEADER.unpack(header)
            payload = self.sock.recv(size) if size else b""
            if len(payload) < size:
                raise Failed(f"short payload: {payload.hex()}")
            return wire.decode_response(wire.ResponseHeader(version, code, size), payload)
        while (answer := self.parser.next_event()) is NEED_DATA:
            data = self.sock.recv(65536)
            if not data:
                raise Failed("the server closed the connection")
            self.parser.receive_data(data)
        return answer

    def request(self, frame: bytes, *wanted: type) -> wire.Response:
        """Send; on 1607 send again, at most 3 more times."""
        for _ in range(4):
            self.sock.sendall(frame)
            answer = self.receive()
            if not isinstance(answer, wire.ServerError):
                if not isinstance(answer, wanted):
                    raise Failed(f"unexpected answer {answer}")
                return answer
            print("server responded with an error", file=sys.stderr)
            if self.quirk == "no-retry-after-1607":
                break
        raise Failed("server error")

    def run(self) -> None:
        me_info = Path("me.info")
        key = None
        if me_info.exists():
            lines = me_info.read_text().splitlines()
            if lines[0] == self.name:
                key = crypto.import_private_key("".join(lines[2:]))
                self.client_id = bytes.fromhex(lines[1])
                frame = wire.ReconnectRequest(self.client_id, self.name).encode()
                answer = self.request(frame, wire.Reconnected, wire.ReconnectDenied)
                if isinstance(answer, wire.Reconnected):
                    self.aes_key = crypto.unwrap_aes_key(key, answer.encrypted_aes_key)
                else:
                    key = None
        if key is None:
            self.register()
        self.send_file(self.file.read_bytes())

    def register(self) -> None:
        frame = wire.RegisterRequest(wire.ZERO_CLIENT_ID, self.name).encode()
        answer = self.request(frame, wire.Registered, wire.RegistrationFailed)
        if isinstance(answer, wire.RegistrationFailed):
            raise Failed("the name is taken")
        self.client_id = answer.client_id
        key = crypto.generate_rsa_key()
        text = crypto.export_private_key(key)
        Path("me.info").write_text(f"{self.name}\n{self.client_id.hex()}\n{text}\n")
        Path("priv.key").write_text(text + "\n")
        frame = wire.PublicKeyRequest(self.client_id, self.name, crypto.public_key_der(key))
        answer = self.request(frame.encode(), wire.PublicKeyAccepted)
        assert isinstance(answer, wire.PublicKeyAccepted)
        self.aes_key = crypto.unwrap_aes_key(key, answer.encrypted_aes_key)

    def packets(self, data: bytes) -> list[bytes]:
        if self.quirk == "per-packet-cbc":
            pieces = [data[i : i + PACKET - 16] for i in range(0, len(data), PACKET - 16)]
            slices = [crypto.encrypt_file_bytes(self.aes_key, p) for p in pieces or [b""]]
        else:
            ciphertext = crypto.encrypt_file_bytes(self.aes_key, data)
            slices = [ciphertext[i : i + PACKET] for i in range(0, len(ciphertext), PACKET)]
        if self.quirk == "no-packet-for-empty-file" and not data:
            return []
        size = len(data) if self.quirk == "plaintext-sizes" else sum(map(len, slices))
        total = len(slices)
        frames = []
        for number, piece in enumerate(slices, start=1):
            fields = (number, total)
            if self.quirk == "swapped-packet-fields":
                fields = (total, number)
            if self.quirk == "zero-based-packets":
                fields = (number - 1, total)
            header = wire.PacketHeader(self.client_id, size, len(data), *fields, self.file.name)
            frame = header.encode_frame_start(len(piece)) + piece
            if self.quirk == "payload-size-mismatch":  # payload_size without the fields
                frame = REQUEST_HEADER.pack(self.client_id, 3, 828, len(piece)) + frame[23:]
            frames.append(frame)
        return frames

    def send_packets(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.sock.sendall(frame)
            if self.quirk == "waits-for-828-answer" and frame is not frames[-1]:
                self.receive()

    def send_file(self, data: bytes) -> None:
        name = self.file.name
        want = cksum(data)
        attempt = errors = 0
        frames = self.packets(data)
        if not frames:  # the mistake: nothing to send, so straight to the verdict
            self.verdict(wire.CrcOkRequest(self.client_id, name).encode())
            return
        self.send_packets(frames)
        while True:
            answer = self.receive()
            if isinstance(answer, wire.ServerError):
                errors += 1
                print("server responded with an error", file=sys.stderr)
                if errors > 3 or self.quirk == "no-retry-after-1607":
                    raise Failed("server error")
                self.send_packets(self.packets(data))
                continue
            if isinstance(answer, wire.Acknowledged):
                continue  # a server that answers 901
            if not isinstance(answer, wire.FileReceived):
                raise Failed(f"unexpected answer {answer}")
            attempt += 1
            if answer.cksum == want:
                self.verdict(wire.CrcOkRequest(self.client_id, name).encode())
                return
            if attempt == 4:
                self.verdict(wire.CrcGiveUpRequest(self.client_id, name).encode())
                raise Failed("the CRC differed four times")
            self.sock.sendall(wire.CrcRetryRequest(self.client_id, name).encode())
            if self.quirk == "waits-for-901-answer":
                self.receive()
            self.send_packets(self.packets(data))

    def verdict(self, frame: bytes) -> None:
        answer = self.request(frame, wire.Acknowledged)
        assert answer.code == ResponseCode.ACKNOWLEDGED


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quirk", choices=QUIRKS)
    args = parser.parse_args()
    try:
        Client(args.quirk).run()
    except Failed as exc:
        print(f"deviant client: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
