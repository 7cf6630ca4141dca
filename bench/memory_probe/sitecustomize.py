"""``SOAK_PROBE=1 make soak``: what the server's memory is made of, sampled from inside.

Put on ``PYTHONPATH`` by ``bench/soak.py`` only when ``SOAK_PROBE`` is set; Python
imports it at start-up in every process of the lab, and it does something only in the
server (``-m eft_server``). A daemon thread appends a JSON line to ``SOAK_PROBE_FILE``
every ``SOAK_PROBE_INTERVAL`` seconds (default 2): CPython's small-object allocator
(``_PyObject_DebugMallocStats``: its 1 MiB arenas now and at most, the bytes in live
blocks), glibc's ``mallinfo2`` (every malloc arena: main heap, mmap'd blocks, bytes in
use and free), the threads alive, ``/proc/self/status``'s resident memory by kind, and
version 4's pool of record buffers. ``SOAK_PROBE_TRACEMALLOC=N`` also traces every
Python allocation (N frames) from ``SOAK_PROBE_TRACE_FROM`` seconds on (default 10:
after start-up) and lists the live ones of 128 KiB or more.
Nothing of the server's own code changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import re
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

_MALLINFO2_FIELDS = (
    *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
    *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]


def _obmalloc(libc: ctypes.CDLL, scratch: str) -> dict[str, int]:
    handle = libc.fopen(scratch.encode(), b"w")
    if not handle:
        return {}
    try:
        ctypes.pythonapi._PyObject_DebugMallocStats(ctypes.c_void_p(handle))
    finally:
        libc.fclose(ctypes.c_void_p(handle))
    with open(scratch, encoding="ascii", errors="replace") as text:
        stats = text.read()
    found: dict[str, int] = {}
    for label, key in (
        ("arenas allocated total", "py_arenas_total"),
        ("arenas reclaimed", "py_arenas_reclaimed"),
        ("arenas highwater mark", "py_arenas_highwater"),
        ("arenas allocated current", "py_arenas_current"),
        ("bytes in allocated blocks", "py_bytes_in_blocks"),
        ("bytes in available blocks", "py_bytes_free_in_pools"),
    ):
        match = re.search(rf"# {label}\s*=\s*([\d,]+)", stats)
        if match:
            found[key] = int(match.group(1).replace(",", ""))
    match = re.search(r"(\d+) unused pools", stats)
    if match:
        found["py_unused_pools"] = int(match.group(1))
    return found


def _status() -> dict[str, int]:
    found: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
                number = int(value.split()[0])
                found[key] = number if key == "Threads" else number * 1024
    return found


_found: dict[str, object] = {}


def _record_buffers() -> dict[str, int]:
    """Version 4's pool of 1 MiB record buffers (frame_reader.RecordBuffers): kept once
    made, so it holds as many as were ever in use at once. Made so far = the pool's
    size less those still available to be made or taken, plus those on its free list."""
    module = sys.modules.get("eft_server.frame_reader")
    config = sys.modules.get("eft_server.config")
    if module is None or config is None:
        return {}
    pool = _found.get("pool")
    if pool is None:
        pools = [o for o in gc.get_objects() if isinstance(o, module.RecordBuffers)]
        if not pools:
            return {}
        pool = _found["pool"] = pools[0]
    count = _found.get("count")
    if count is None:
        argv = list(getattr(sys, "orig_argv", []))
        given = argv[argv.index("--record-buffers") + 1] if "--record-buffers" in argv else None
        count = _found["count"] = int(given or config.ServerConfig.record_buffers)
    free, available = len(pool._free), pool._available  # type: ignore[attr-defined]
    return {
        "record_buffers_made": int(count) - available + free,  # type: ignore[call-overload]
        "record_buffers_in_use": int(count) - available,  # type: ignore[call-overload]
        "record_buffer_bytes": pool.size,  # type: ignore[attr-defined]
    }


def _large_blocks(smallest: int) -> list[list[object]]:
    """Live Python allocations of at least ``smallest`` bytes and where they were made."""
    snapshot = tracemalloc.take_snapshot()
    blocks = [trace for trace in snapshot.traces if trace.size >= smallest]
    return [
        [trace.size, [f"{Path(frame.filename).name}:{frame.lineno}" for frame in trace.traceback]]
        for trace in sorted(blocks, key=lambda trace: -trace.size)
    ]


def _sample(libc: ctypes.CDLL, scratch: str, started: float) -> dict[str, object]:
    info = libc.mallinfo2()
    record: dict[str, object] = {"t": round(time.monotonic() - started, 2)}
    record.update(_status())
    record.update(_obmalloc(libc, scratch))
    record.update({f"glibc_{name}": getattr(info, name) for name in _MALLINFO2_FIELDS[:10]})
    record.update(_record_buffers())
    if tracemalloc.is_tracing():
        record["traced_bytes"], record["traced_peak"] = tracemalloc.get_traced_memory()
        record["large_blocks"] = _large_blocks(128 * 1024)
    record["threads"] = sorted(thread.name for thread in threading.enumerate())
    record["load1"] = os.getloadavg()[0]
    return record


def _run(path: str, interval: float) -> None:
    frames = int(os.environ.get("SOAK_PROBE_TRACEMALLOC") or 0)
    trace_from = float(os.environ.get("SOAK_PROBE_TRACE_FROM") or 10)
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = _MallInfo2
    ctypes.pythonapi._PyObject_DebugMallocStats.argtypes = [ctypes.c_void_p]
    scratch = os.path.join(tempfile.gettempdir(), f"eft-probe-{os.getpid()}.txt")
    started = time.monotonic()
    try:
        while True:
            if frames and not tracemalloc.is_tracing() and time.monotonic() - started >= trace_from:
                tracemalloc.start(frames)  # costly: after start-up, every allocation traced
            with contextlib.suppress(OSError), open(path, "a", encoding="ascii") as out:
                out.write(json.dumps(_sample(libc, scratch, started)) + "\n")
            time.sleep(interval)
    finally:
        with contextlib.suppress(OSError):
            os.remove(scratch)


def _start() -> None:
    path = os.environ.get("SOAK_PROBE_FILE")
    argv = getattr(sys, "orig_argv", [])
    if not path or "eft_server" not in argv:
        return
    interval = float(os.environ.get("SOAK_PROBE_INTERVAL") or 2)
    threading.Thread(target=_run, args=(path, interval), name="soak-probe", daemon=True).start()


_start()
