"""Attacks that need no server, run in this process through ``eft-attack``'s command:
log-secrets (attacks/eft_attacks/log_secrets.py) finds each form a secret can take in
a log and nothing else; path-traversal's verdict (path_traversal.py) tells an upload
that landed outside the client's directory from one kept inside; zero-iv's block
comparison (zero_iv.py) and its run on a recording with nothing in it."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import pytest

from eft_attacks import cli
from eft_attacks.common import Out
from eft_attacks.log_secrets import forms, text_forms
from eft_attacks.path_traversal import escaped, verdict
from eft_attacks.zero_iv import common_blocks

SECRET = bytes(range(40, 72))


def _result(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    result: dict[str, object] = lines[-1]
    assert result["event"] == "result"
    return result


@pytest.mark.parametrize(
    ("logged", "form"),
    [
        (SECRET.hex(), "hex"),
        (SECRET.hex().upper(), "HEX"),
        (base64.b64encode(SECRET).decode(), "base64"),
        ("key=" + SECRET.hex()[:30], "hex prefix"),
    ],
)
def test_a_secret_in_a_log_is_found_in_each_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], logged: str, form: str
) -> None:
    log = tmp_path / "server.log"
    log.write_text(f'{{"event": "x", "detail": "{logged}"}}\n')
    code = cli.main(["log-secrets", "--json", "--scan", str(log), "--secret", SECRET.hex()])
    assert code == cli.EXIT_SUCCEEDED
    found = _result(capsys)["found"]
    assert isinstance(found, list) and form in [entry["form"] for entry in found]


def test_a_clean_log_is_a_failed_attack_and_no_secret_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "server.log"
    log.write_text('{"event": "transfer", "bytes": 10}\n')
    assert cli.main(["log-secrets", "--json", "--scan", str(log), "--secret", SECRET.hex()]) == 1
    assert _result(capsys)["found"] == []
    assert cli.main(["log-secrets", "--json", "--scan", str(log)]) == cli.EXIT_ERROR


def test_the_forms_of_a_secret_and_of_a_key_line() -> None:
    assert {needle.form for needle in forms("k", SECRET)} == {
        "raw", "hex", "HEX", "base64", "hex prefix", "base64 prefix"
    }  # fmt: skip
    assert forms("short", b"12") == [], "too short to tell from noise"
    four = {needle.form for needle in forms("four", b"1234")}
    assert four == {"hex", "HEX", "base64", "hex prefix", "base64 prefix"}, "not raw: 4 bytes"
    line = "x25519:" + base64.b64encode(SECRET).decode()
    found = {(needle.what, needle.form) for needle in text_forms("me4", line)}
    assert ("me4", "as written") in found and ("me4 (decoded)", "hex") in found


def test_path_traversal_tells_an_escape_from_a_name_kept_inside(tmp_path: Path) -> None:
    data_dir, token = tmp_path / "server" / "data", "trav-4f2a9c"
    own = data_dir / "v4" / "files" / "abcd"
    own.mkdir(parents=True)
    (own / f"{token}-inside").write_text("x")
    assert escaped(data_dir, own, token) == []
    args = argparse.Namespace(data_dir=str(data_dir))
    assert verdict(args, own, token, {}, Out()) is False
    outside = tmp_path / "server" / f"{token}-escaped"
    outside.write_text("x")
    assert escaped(data_dir, own, token) == [str(outside)]
    assert verdict(args, own, token, {}, Out()) is True
    assert verdict(argparse.Namespace(data_dir=None), own, token, {}, Out()) is False


def test_zero_iv_counts_equal_leading_blocks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = bytes(32) + b"A" * 16
    assert common_blocks(a, bytes(32) + b"B" * 16) == 2
    assert common_blocks(a, a) == 3
    assert common_blocks(a, b"x" + a[1:]) == 0
    assert common_blocks(a, bytes(20)) == 1, "only whole blocks of the shorter"
    recording = tmp_path / "empty.jsonl"
    recording.write_text("")
    assert cli.main(["zero-iv", "--json", "--recording", str(recording)]) == 1
    assert _result(capsys)["pairs"] == []
