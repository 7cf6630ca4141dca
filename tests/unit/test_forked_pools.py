"""A child forked from a process that ran the tests (as mutmut runs each mutant) gets
thread pools that work: tests/conftest.py's fork hook. Without it, the pools it
inherits have no threads, so a resumable chunk's write, a background sync or the
in-process client's hashing of a chunk waits for ever, and mutmut counts that as a
timeout: a kill, whatever the mutant."""

from __future__ import annotations

import concurrent.futures
import os
import sys

from eft_client import transfer_v4
from eft_server import partial_uploads, sync_behind

#: Seconds the child gives each pool's task before it reports the pool dead: only how
#: long a broken hook takes to fail, never reached by a working one.
GIVE_UP = 30


def _pools() -> list[concurrent.futures.Executor]:
    """The pools as the modules hold them now (the fork hook replaces them in a child)."""
    return [
        partial_uploads._WRITERS,
        partial_uploads._SYNCERS,
        sync_behind._executor(),
        transfer_v4._HASHER,
    ]


def _child() -> int:
    pools = _pools()
    try:
        for pool in pools:
            if pool.submit(os.getpid).result(timeout=GIVE_UP) != os.getpid():
                return 2
    except TimeoutError:
        return 1
    return 0


def test_a_forked_child_has_thread_pools_that_run_its_tasks() -> None:
    # The parent's pools have threads, as after tests that wrote and synced uploads.
    for pool in _pools():
        assert pool.submit(os.getpid).result() == os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os._exit(_child())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
