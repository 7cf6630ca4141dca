"""A stateful property test of version 4: uploads through faults, in memory.

Hypothesis runs one connection after another between a ``ClientSessionV4`` and a
``ServerSessionV4`` (one registry, one "disk"), each uploading one of a few files, with a
fault at a chosen frame: dropped, a bit flipped, the connection cut, or the client
falling silent mid-frame while the server's fake clock runs to its deadline. The client
keeps each file's upload id until the file is verified, as ``transfer_v4`` does, so the
next connection resumes. After every step:

* the server session never raised, and every connection that ended early ended by a
  rule: the server's silent close with a reason, its timeout, the cut, or the client
  refusing an answer that fails authentication (a flipped bit of the handshake);
* no partial upload is held by a connection that is gone;
* every stored file is byte for byte the one the client sent, and a file the client saw
  verified is stored;
* a resume never starts past the chunks the server kept, and never skips the final one.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from eft_protocol import errors
from eft_protocol.noise import KeyPair
from eft_protocol.notices import ClientRegistered, ClosedSilently, UploadResumed
from eft_protocol.registry import MemoryRegistry
from eft_protocol.v4 import client as v4c
from eft_protocol.v4 import records as rec
from eft_protocol.v4 import server as v4s
from tests.support.examples import examples
from tests.v4.memory_link_v4 import (
    ClientEnd,
    Clock,
    Disk,
    Fault,
    LinkClosed,
    ServerEnd,
    upload,
)

EXAMPLES = int(os.environ.get("EFT_STATEFUL_EXAMPLES", examples(40)))
SERVER_KEY = KeyPair.generate()
CLIENT_KEY = KeyPair.generate()
FILES = {
    "empty.txt": b"",
    "small.bin": bytes(range(256)) * 3,
    "one.bin": os.urandom(rec.CHUNK),
    "three.bin": os.urandom(2 * rec.CHUNK + 77),
}


class V4Uploads(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.registry = MemoryRegistry()
        self.disk = Disk()
        self.clock = Clock()
        self.registered = False
        self.upload_ids: dict[str, bytes] = {}
        self.verified: set[str] = set()
        self.server: ServerEnd | None = None
        self.connections = 0

    @rule(
        name=st.sampled_from(sorted(FILES)),
        fault=st.none() | st.sampled_from(list(Fault)),
        at_frame=st.integers(min_value=1, max_value=8),
    )
    def one_connection(self, name: str, fault: Fault | None, at_frame: int) -> None:
        data = FILES[name]
        upload_id = self.upload_ids.setdefault(name, os.urandom(16))
        kept = self._kept_chunks(upload_id)
        self.server = server = ServerEnd(SERVER_KEY, self.registry, self.disk, self.clock)
        self.connections += 1

        def hook(number: int, frame: bytes) -> bytes | Fault:
            if fault is None or number != at_frame:
                return frame
            if fault is Fault.DROP:
                return b""
            if fault is Fault.FLIP:
                flipped = bytearray(frame)
                flipped[len(frame) // 2] ^= 0x10
                return bytes(flipped)
            return fault

        session = v4c.ClientSessionV4(
            CLIENT_KEY, "vera", register=not self.registered, check_server=lambda _: None
        )
        client = ClientEnd(server, session, hook)
        ended: str | None = None
        try:
            upload(client, name, data, upload_id, register=not self.registered)
        except LinkClosed as closed:
            ended = str(closed)
        except errors.ResponseError as refused:  # the client caught the damage first
            ended = f"client: {refused}"
        finally:
            server.lose()
        if ended is not None:
            assert fault is not None, ended
            self._check_ended_by_rule(server, fault, ended)
        else:
            self.verified.add(name)
            del self.upload_ids[name]  # verified: a later send is a new upload
        if any(isinstance(notice, ClientRegistered) for notice in server.notices):
            self.registered = True
        resumed = [n for n in server.notices if isinstance(n, UploadResumed)]
        for notice in resumed:
            assert notice.fields["chunk"] <= kept + 1
            assert notice.fields["chunk"] <= notice.fields["of"]

    def _kept_chunks(self, upload_id: bytes) -> int:
        partial = self.disk.partials.get((v4c.client_id_for(CLIENT_KEY.public), upload_id))
        if partial is None:
            return 0
        kept = 0
        while kept + 1 in partial.chunks:
            kept += 1
        return kept

    def _check_ended_by_rule(self, server: ServerEnd, fault: Fault, how: str) -> None:
        silent = [n for n in server.notices if isinstance(n, ClosedSilently)]
        if fault is Fault.CUT:
            assert how == "cut" or silent, how
        elif how.endswith("timeout"):
            assert how.split(maxsplit=1)[0] in ("handshake", "read", "idle"), how
        elif how.startswith("client:"):
            assert fault is Fault.FLIP, how  # only a changed byte fails authentication
        else:
            assert silent and silent[0].reason in v4s.CLOSE_REASONS, (how, server.notices)

    @invariant()
    def the_state_is_known(self) -> None:
        if self.server is not None:
            assert isinstance(self.server.session.state, v4s.ServerStateV4)

    @invariant()
    def nothing_is_held_by_a_gone_connection(self) -> None:
        assert not any(partial.held for partial in self.disk.partials.values())

    @invariant()
    def stored_files_are_what_was_sent(self) -> None:
        client_id = v4c.client_id_for(CLIENT_KEY.public)
        stored = {name for (owner, name) in self.disk.files if owner == client_id}
        assert self.verified <= stored
        for (_, name), data in self.disk.files.items():
            assert data == FILES[name]


V4Uploads.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=8,
    suppress_health_check=[HealthCheck.too_slow],
)
test_v4_uploads_through_faults = V4Uploads.TestCase
