"""What ``eft-admin`` prints (server/eft_admin/output.py): the listed rows as JSON with
--json, else aligned columns with ``-`` for nothing and yes/no for flags; any other
answer as key: value lines."""

from __future__ import annotations

import json

from eft_admin.output import render

CLIENTS = {
    "clients": [
        {"name": "alice", "version": 4, "client_id": "ab", "files": 2, "bytes": 10,
         "last_seen": None, "revoked": False},
        {"name": "bo", "version": 3, "client_id": "cdef", "files": 0, "bytes": 0,
         "last_seen": "2026-12-06", "revoked": True, "extra": "not a column"},
    ]
}  # fmt: skip


def test_a_listing_is_aligned_columns() -> None:
    lines = render("list-clients", CLIENTS, as_json=False).splitlines()
    assert lines[0].split() == [
        "name", "version", "client_id", "files", "bytes", "last_seen", "revoked"
    ]  # fmt: skip
    assert lines[1].split() == ["alice", "4", "ab", "2", "10", "-", "no"]
    assert lines[2].split() == ["bo", "3", "cdef", "0", "0", "2026-12-06", "yes"]
    starts = {
        line.index(value) for line, value in zip(lines, ("client_id", "ab", "cdef"), strict=True)
    }
    assert len(starts) == 1, "each column starts at the same place on every line"
    assert all(line == line.rstrip() for line in lines)
    assert "not a column" not in "\n".join(lines)


def test_json_is_the_rows_for_a_listing_and_the_answer_otherwise() -> None:
    assert json.loads(render("list-clients", CLIENTS, as_json=True)) == CLIENTS["clients"]
    answer = {"revoked": "alice", "files_kept": True}
    assert json.loads(render("revoke", answer, as_json=True)) == answer


def test_any_other_answer_is_key_value_lines() -> None:
    text = render("show-key", {"fingerprint": "SHA256:x", "next": None, "ok": True}, as_json=False)
    assert text.splitlines() == ["fingerprint: SHA256:x", "next: -", "ok: yes"]


def test_an_empty_listing_is_its_header_only() -> None:
    assert render("list-files", {"files": []}, as_json=False).split() == [
        "client", "version", "file", "size", "stored_at", "last_seen"
    ]  # fmt: skip
