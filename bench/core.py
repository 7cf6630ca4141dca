"""The server's protocol core in one process, with no sockets and no disk.

One upload's frames (made by a real ``ClientSession`` after a real key exchange) go
through ``RequestParser`` and ``ServerSession`` in 256 KiB reads; the plaintext is
dropped. What is left of the server's cost per GiB once the kernel (receive, write) and
asyncio are out: decryption, checksum and the Python around them for every 828 packet.
"""

from __future__ import annotations

import os
import time

from eft_protocol import crypto
from eft_protocol import server_session as ss
from eft_protocol.client_session import ClientSession
from eft_protocol.codes import DEFAULT_PACKET_SIZE
from eft_protocol.parser import NEED_DATA, RequestParser, ResponseParser
from eft_protocol.registry import MemoryRegistry

from .common import GiB, MiB, median

READ = 256 * 1024


def _keyed_pair(key: object) -> tuple[ClientSession, ss.ServerSession]:
    """A client and a server session that have registered and exchanged the AES key."""
    server = ss.ServerSession(MemoryRegistry())
    client = ClientSession("core", new_key=lambda: key)  # type: ignore[arg-type, return-value]
    parser, responses = RequestParser(), ResponseParser()
    frames = client.start()
    while frames:
        for frame in frames:
            parser.receive_data(frame)
        while (event := parser.next_event()) is not NEED_DATA:
            for effect in server.handle(event, 0.0):
                if isinstance(effect, ss.Send):
                    responses.receive_data(effect.response.encode())
        frames = []
        while (response := responses.next_event()) is not NEED_DATA:
            frames += client.receive(response).send
    assert client.ready and server.has_key
    return client, server


def measure(
    repeats: int = 3, volume: int = 128 * MiB, packet_size: int = DEFAULT_PACKET_SIZE
) -> float:
    """Median CPU seconds per GiB for the server core to take one upload."""
    key = crypto.generate_rsa_key()
    plaintext = os.urandom(volume)
    samples = []
    for _ in range(repeats):
        client, server = _keyed_pair(key)
        sender = client.begin_file("core.bin", volume, packet_size)
        stream = b"".join([*sender.feed_pieces(plaintext), *sender.finish_pieces()])
        parser = RequestParser()
        started = time.process_time()
        with memoryview(stream) as view:
            for start in range(0, len(view), READ):
                parser.receive_data(view[start : start + READ])
                while (event := parser.next_event()) is not NEED_DATA:
                    server.handle(event, 0.0)
        samples.append((time.process_time() - started) * GiB / volume)
        assert server.state is ss.State.AWAITING_VERDICT
    return median(samples)


if __name__ == "__main__":
    print(f"server core: {measure():.2f} CPU s per GiB")
