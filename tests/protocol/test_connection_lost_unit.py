"""``ServerSession.connection_lost`` (version 3): a peer gone in the middle of a file
leaves the file discarded and one "aborted" transfer notice for the log; gone between
files, nothing. (A mutation survivor of ``server_session``: the outcome could be dropped
and no in-process test noticed; docs/TESTING.md.)"""

from __future__ import annotations

from eft_protocol import server_session as ss
from eft_protocol.notices import Transfer
from eft_protocol.parser import NEED_DATA, PacketContent, RequestParser
from tests.protocol.test_parser_fuzz import SEEDS, _server


def _session_in_the_middle_of_a_file() -> ss.ServerSession:
    stream, _ = SEEDS[0]  # 825, 826, a file in 64-byte packets, 900
    session, parser = _server(), RequestParser()
    parser.receive_data(stream)
    while (event := parser.next_event()) is not NEED_DATA:
        session.handle(event, 1.0)
        if isinstance(event, PacketContent):
            return session
    raise AssertionError("the seed has no file content")


def test_a_peer_gone_mid_file_discards_it_and_logs_it_aborted() -> None:
    effects = _session_in_the_middle_of_a_file().connection_lost()
    assert isinstance(effects[0], ss.DiscardFile)
    (notice,) = effects[1:]
    assert type(notice) is Transfer
    assert notice.fields["outcome"] == "aborted"
    assert notice.fields["attempt"] == 1
    assert notice.fields["bytes"] > 0


def test_gone_between_files_or_twice_is_nothing() -> None:
    session = _session_in_the_middle_of_a_file()
    session.connection_lost()
    assert session.connection_lost() == []
    assert _server().connection_lost() == []
