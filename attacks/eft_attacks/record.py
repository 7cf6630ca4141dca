"""A passive recorder: relay clients to the server unchanged, write both byte streams.

The recording (JSON lines with timestamps, see ``recording.py``) is what a passive
eavesdropper on the network has; ``sniff``, ``crc-recover``, ``zero-iv``, ``replay``,
``padding-oracle`` and ``decrypt-recording`` read it. Stops after ``--connections``
client connections have closed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Out, add_listen_argument, add_target_argument
from .proxy import Interceptor, MitmConnection, MitmProxy
from .recording import Recorder, load_sessions

FINDING = "tool"
SUMMARY = "record sessions through a transparent proxy (input for other attacks)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_argument(parser)
    add_listen_argument(parser)
    parser.add_argument("--out", required=True, help="the recording file to write")
    parser.add_argument(
        "--connections", type=int, default=1, help="stop after this many have closed (1)"
    )


class _Counting(Interceptor):
    def __init__(self, wanted: int) -> None:
        self.wanted, self.closed = wanted, 0

    async def client_closed(self, conn: MitmConnection) -> None:
        conn.close_server()
        self.closed += 1
        if self.closed >= self.wanted:
            self.proxy.finish(True)


async def run(args: argparse.Namespace, out: Out) -> bool:
    path = Path(args.out)
    proxy = MitmProxy(args.target, _Counting(args.connections), out, Recorder(path, args.target))
    await proxy.run(args.listen, args.timeout)
    sessions = load_sessions(path)
    frames = sum(len(view.events) for view in sessions)
    files = sum(len(view.attempts) for view in sessions)
    return out.result(
        frames > 0,
        f"recorded {len(sessions)} connection(s), {frames} frames, {files} file attempt(s)",
        recording=str(path),
        connections=len(sessions),
        frames=frames,
    )
