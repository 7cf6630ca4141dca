"""The README's two exit-code tables, one for both clients and one for the server: each
lists exactly the codes the programs define, and each code is produced by a test.

``WHERE_TESTED`` names, for every code, the test that makes the program exit with it;
the last two tests here produce the Python client's 1 and 130, which no other test did.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from eft_client import cli
from eft_client.errors import ExitCode
from eft_server import startup
from eft_server.cli import EXIT_DATA_DIR_LOCKED
from tests.support.processes import clean_env

ROOT = Path(__file__).resolve().parents[2]

#: code -> the test that sees each program exit with it: (file, function).
WHERE_TESTED: dict[str, dict[int, tuple[str, str]]] = {
    "eft-client": {
        0: (
            "tests/e2e/test_end_to_end.py",
            "test_register_reconnect_and_register_again_after_a_restart",
        ),
        1: ("tests/e2e/test_exit_codes.py", "test_an_unexpected_error_is_an_internal_error"),
        2: (
            "tests/e2e/test_end_to_end.py",
            "test_a_config_directory_that_is_a_file_is_a_clear_usage_error",
        ),
        3: (
            "tests/e2e/test_client_against_scripted_server.py",
            "test_nobody_listening_is_cannot_connect",
        ),
        4: (
            "tests/e2e/test_client_against_scripted_server.py",
            "test_a_taken_name_is_reported_as_refused",
        ),
        5: (
            "tests/e2e/test_client_against_scripted_server.py",
            "test_crc_wrong_every_time_sends_902_on_the_fourth_attempt",
        ),
        6: (
            "tests/e2e/test_client_against_scripted_server.py",
            "test_four_1607s_end_with_the_server_error_exit_code",
        ),
        7: (
            "tests/v4/test_v4_end_to_end.py",
            "test_a_changed_server_key_stops_the_client_before_it_says_who_it_is",
        ),
        8: (
            "tests/faults/test_storage_faults.py",
            "test_the_clients_exit_with_their_storage_code_at_each_step_and_then_succeed",
        ),
        9: (
            "tests/e2e/test_identity_lifecycle.py",
            "test_a_forged_1606_keeps_the_identity_and_only_re_register_replaces_it",
        ),
        10: ("tests/v4/test_v4_names_end_to_end.py", "test_no_space_on_the_server_is_exit_10"),
        11: (
            "tests/v4/test_folders_end_to_end.py",
            "test_a_file_that_changes_while_it_is_read_is_reported_and_not_stored",
        ),
        130: ("tests/e2e/test_exit_codes.py", "test_ctrl_c_is_exit_130"),
    },
    # 1: the catch-all in app.cpp, which no input reaches (it would be a bug); 7, 8, 10
    # and 11 are version 4's, which this client does not speak.
    "eft-client-cpp": {
        0: ("tests/cpp/test_cpp_client.py", "test_register_then_reconnect"),
        2: ("tests/cpp/test_cpp_client.py", "test_unsendable_file_name_refused_before_connecting"),
        3: ("tests/cpp/test_cpp_client.py", "test_network_timeout_exit_3"),
        4: ("tests/cpp/test_cpp_client.py", "test_name_taken_exit_4"),
        5: ("tests/cpp/test_cpp_client.py", "test_crc_always_fails_902_exit_5"),
        6: ("tests/cpp/test_cpp_client.py", "test_file_name_rejected_by_server_exit_6"),
        9: ("tests/cpp/test_cpp_client.py", "test_unknown_client_registers_again_only_when_asked"),
        130: ("tests/cpp/test_cpp_client.py", "test_ctrl_c_exit_130"),
    },
    # 1: an unexpected exception (a bug); no input reaches it.
    "eft-server": {
        0: (
            "tests/faults/test_server_shutdown.py",
            "test_an_idle_server_stops_at_once_with_exit_0",
        ),
        2: ("tests/e2e/test_server_startup.py", "test_a_bad_flag_is_a_usage_error"),
        3: ("tests/e2e/test_server_startup.py", "test_a_port_in_use_says_which_port"),
        4: (
            "tests/e2e/test_server_startup.py",
            "test_a_metrics_port_in_use_is_not_mistaken_for_the_servers",
        ),
        5: ("tests/e2e/test_server_startup.py", "test_a_data_directory_that_is_a_file"),
        6: (
            "tests/faults/test_data_dir_lock.py",
            "test_a_second_server_on_the_same_data_directory_refuses_and_the_first_goes_on",
        ),
        7: ("tests/e2e/test_files_at_rest.py", "test_a_server_key_others_can_read_is_refused"),
        8: ("tests/postgres/test_pg_startup.py", "test_a_wrong_password_is_refused_clearly"),
        9: ("tests/s3/test_s3_startup.py", "test_each_unusable_store_stops_the_server_with_exit_9"),
    },
}
UNREACHABLE = {"eft-client-cpp": {1, 7, 8, 10, 11}, "eft-server": {1}}


def _readme_codes(heading: str) -> set[int]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(heading, 1)[1].split("\n#", 1)[0]
    return {int(code) for code in re.findall(r"^\| (\d+)(?:, \d+)? \|", section, re.MULTILINE)} | {
        int(code) for code in re.findall(r"^\| \d+, (\d+) \|", section, re.MULTILINE)
    }


def _cpp_codes() -> set[int]:
    header = (ROOT / "client/cpp/src/errors.h").read_text()
    enum = header.split("enum class ExitCode", 1)[1].split("};", 1)[0]
    return {int(code) for code in re.findall(r"= (\d+),", enum)}


def _server_codes() -> set[int]:
    classes: list[type[startup.StartupError]] = [startup.StartupError]
    codes = {0, 2, EXIT_DATA_DIR_LOCKED}  # stopped; argparse's usage error; the lock
    while classes:
        cls = classes.pop()
        codes.add(cls.exit_code)
        classes.extend(cls.__subclasses__())
    return codes


def test_both_clients_define_the_codes_of_the_readme_and_no_other() -> None:
    table = _readme_codes("### Exit codes (both clients)")
    assert table == {int(code) for code in ExitCode}
    assert _cpp_codes() == table


def test_the_server_defines_the_codes_of_the_readme_and_no_other() -> None:
    assert _readme_codes("#### Exit codes of `eft-server`") == _server_codes()


@pytest.mark.parametrize("program", sorted(WHERE_TESTED))
def test_every_code_is_produced_by_a_test(program: str) -> None:
    defined = _server_codes() if program == "eft-server" else {int(code) for code in ExitCode}
    tested = WHERE_TESTED[program]
    assert set(tested) == defined - UNREACHABLE.get(program, set())
    for path, function in tested.values():
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {function}\(", source, re.MULTILINE), (path, function)


def test_an_unexpected_error_is_an_internal_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_args: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "settings_from", broken)
    assert cli.main(["--server", "127.0.0.1:1", "--name", "a", "x"]) == ExitCode.INTERNAL_ERROR
    assert "internal error" in capsys.readouterr().err


def test_ctrl_c_is_exit_130(tmp_path: Path) -> None:
    """A server that accepts and never answers; Ctrl-C while the client waits."""
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 100)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        command = [sys.executable, "-m", "eft_client", "--json", "--protocol", "3"]
        command += ["--server", f"127.0.0.1:{port}", "--name", "alice"]
        command += ["--config-dir", str(tmp_path / "client"), str(source)]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env()
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:  # until it has connected and waits for the answer
                if json.loads(line)["event"] == "connected":
                    break
            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED
    assert json.loads(rest.splitlines()[-1])["event"] == "interrupted"
