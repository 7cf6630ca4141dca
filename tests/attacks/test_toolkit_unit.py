"""The attack toolkit's command and shared helpers (attacks/eft_attacks/cli.py,
common.py, errors.py), on their own: the exit codes, the list of attacks with their
findings, an attack that cannot be carried out (exit 3, said in JSON); progress lines
human or JSON; addresses, victims and stolen me.info files read or refused."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from eft_attacks import cli
from eft_attacks.common import Out, address, preview, read_me_info, victim_from_args
from eft_attacks.errors import AttackError
from eft_protocol import crypto


def test_usage_version_and_unknown_attacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == cli.EXIT_USAGE
    assert cli.main(["--version"]) == cli.EXIT_SUCCEEDED
    assert cli.main(["no-such-attack"]) == cli.EXIT_USAGE
    assert "unknown attack 'no-such-attack'" in capsys.readouterr().err


def test_the_list_names_every_attack_with_its_finding(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list"]) == cli.EXIT_SUCCEEDED
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(cli.ATTACKS)
    for name in cli.ATTACKS:
        module = cli.load(name)
        assert module.SUMMARY and callable(module.run) and callable(module.add_arguments)


def test_an_attack_that_cannot_be_carried_out_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-recording"
    assert cli.main(["sniff", "--json", "--recording", str(missing)]) == cli.EXIT_ERROR
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "error"
    assert f"cannot read the recording {missing}" in events[-1]["error"]


def test_a_recording_that_cannot_be_written_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unwritable = tmp_path / "no-such-folder" / "rec.jsonl"
    argv = ["record", "--json", "--out", str(unwritable), "--target", "127.0.0.1:9"]
    assert cli.main(argv) == cli.EXIT_ERROR
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "error"
    assert f"cannot write the recording {unwritable}" in events[-1]["error"]


def test_progress_and_verdict_lines() -> None:
    human, machine = io.StringIO(), io.StringIO()
    for stream, json_mode in ((human, False), (machine, True)):
        out = Out(json_mode=json_mode, stream=stream)
        out.step("sending", size=3)
        assert out.result(True, "stolen", key=b"\x01" * 40) is True
        assert out.result_fields == {"success": True, "key": b"\x01" * 40}
    lines = human.getvalue().splitlines()
    assert lines[0] == "  sending size=3"
    assert lines[1].startswith("[result] attack SUCCEEDED: stolen success=True key=0101")
    assert lines[1].endswith("...")
    records = [json.loads(line) for line in machine.getvalue().splitlines()]
    assert records[1] == {
        "event": "result",
        "message": "attack SUCCEEDED: stolen",
        "success": True,
        "key": "01" * 40,
    }


def test_addresses_and_previews() -> None:
    assert address("10.0.0.1:5000") == ("10.0.0.1", 5000)
    assert address(":5000") == ("127.0.0.1", 5000)
    assert address("[::1]:5000") == ("::1", 5000)
    for bad in ("host", "host:port"):
        with pytest.raises(AttackError):
            address(bad)
    assert preview(b"abc") == "abc"
    assert preview(b"\xff" + b"x" * 300, limit=4) == "\\xffxxx..."


def test_a_stolen_me_info_is_read_and_a_damaged_one_refused(tmp_path: Path) -> None:
    key = crypto.generate_rsa_key(random.Random(14).randbytes)
    me_info = tmp_path / "me.info"
    me_info.write_text(f"victim\n{'ab' * 16}\n{crypto.export_private_key(key)}\n")
    victim = read_me_info(me_info)
    assert (victim.name, victim.client_id) == ("victim", bytes.fromhex("ab" * 16))
    assert victim.private_key is not None and victim.private_key.n == key.n
    me_info.write_text("victim\nnot hex\n")
    with pytest.raises(AttackError, match="cannot read"):
        read_me_info(me_info)


def test_the_victim_from_the_arguments() -> None:
    named = SimpleNamespace(me_info=None, recording=None, client_id="cd" * 16, name="v")
    victim = victim_from_args(named)
    assert (victim.name, victim.client_id, victim.private_key) == (
        "v",
        bytes.fromhex("cd" * 16),
        None,
    )
    for client_id in ("cd" * 15, "not hex"):
        with pytest.raises(AttackError, match="32 hex digits"):
            victim_from_args(
                SimpleNamespace(me_info=None, recording=None, client_id=client_id, name="v")
            )
    with pytest.raises(AttackError, match="say who the victim is"):
        victim_from_args(SimpleNamespace(me_info=None, recording=None, client_id=None, name=None))
