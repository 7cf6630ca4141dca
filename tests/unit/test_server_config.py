"""Server settings: defaults, then port.info, then EFT_* variables, then flags."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from eft_server.config import DEFAULT_PORT, PortInfoWarning, ServerConfig, load_config


def write_port_info(directory: Path, content: str | bytes) -> None:
    path = directory / "port.info"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="ascii")


def load_quietly(argv: list[str], environ: dict[str, str], cwd: Path) -> ServerConfig:
    """load_config, failing the test if it warns."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_config(argv, environ, cwd)


def test_defaults_with_a_valid_port_info(tmp_path: Path) -> None:
    write_port_info(tmp_path, "1234\n")
    config = load_quietly([], {}, tmp_path)
    assert config.port == 1234
    assert config.answer_crc_retry is False
    assert config.host == "0.0.0.0"


@pytest.mark.parametrize("content", ["1", "8080", "65535", " 4321 \n", "4321\r\n"])
def test_a_valid_port_info_gives_its_port(tmp_path: Path, content: str) -> None:
    write_port_info(tmp_path, content)
    assert load_quietly([], {}, tmp_path).port == int(content)


def test_a_missing_port_info_warns_and_gives_1256(tmp_path: Path) -> None:
    with pytest.warns(PortInfoWarning, match="port.info"):
        config = load_config([], {}, tmp_path)
    assert config.port == DEFAULT_PORT == 1256


@pytest.mark.parametrize(
    "content",
    ["abc", "0", "70000", "65536", "", "\n", "-1", "+80", "12 34", "80abc", "1e3", "0x50"],
)
def test_an_invalid_port_info_warns_and_gives_1256(tmp_path: Path, content: str) -> None:
    write_port_info(tmp_path, content)
    with pytest.warns(PortInfoWarning):
        config = load_config([], {}, tmp_path)
    assert config.port == 1256


def test_a_non_ascii_port_info_warns_and_gives_1256(tmp_path: Path) -> None:
    write_port_info(tmp_path, "\uff18\uff10\uff18\uff10".encode())  # fullwidth 8080
    with pytest.warns(PortInfoWarning):
        config = load_config([], {}, tmp_path)
    assert config.port == 1256


def test_an_unreadable_port_info_warns_and_gives_1256(tmp_path: Path) -> None:
    (tmp_path / "port.info").mkdir()
    with pytest.warns(PortInfoWarning):
        config = load_config([], {}, tmp_path)
    assert config.port == 1256


def test_port_info_is_read_from_the_given_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    write_port_info(here, "1111")
    write_port_info(there, "2222")
    monkeypatch.chdir(here)
    assert load_quietly([], {}, there).port == 2222


def test_eft_port_overrides_port_info(tmp_path: Path) -> None:
    write_port_info(tmp_path, "1234")
    assert load_quietly([], {"EFT_PORT": "5555"}, tmp_path).port == 5555


def test_eft_port_means_port_info_is_not_read(tmp_path: Path) -> None:
    write_port_info(tmp_path, "garbage")
    # No PortInfoWarning: the broken file is never consulted.
    assert load_quietly([], {"EFT_PORT": "5555"}, tmp_path).port == 5555


def test_eft_port_zero_means_any_free_port(tmp_path: Path) -> None:
    assert load_quietly([], {"EFT_PORT": "0"}, tmp_path).port == 0


def test_the_port_flag_overrides_eft_port(tmp_path: Path) -> None:
    write_port_info(tmp_path, "1234")
    assert load_quietly(["--port", "7777"], {"EFT_PORT": "5555"}, tmp_path).port == 7777


def test_the_port_flag_alone(tmp_path: Path) -> None:
    assert load_quietly(["--port", "7777"], {}, tmp_path).port == 7777


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "TRUE", "Yes"])
def test_eft_answer_901_turns_on_the_1604_reply(tmp_path: Path, value: str) -> None:
    config = load_quietly([], {"EFT_PORT": "1", "EFT_ANSWER_901": value}, tmp_path)
    assert config.answer_crc_retry is True


@pytest.mark.parametrize("value", ["0", "false", "no", "off", ""])
def test_eft_answer_901_off(tmp_path: Path, value: str) -> None:
    config = load_quietly([], {"EFT_PORT": "1", "EFT_ANSWER_901": value}, tmp_path)
    assert config.answer_crc_retry is False


def test_the_answer_901_flag(tmp_path: Path) -> None:
    assert load_quietly(["--answer-901", "--port", "1"], {}, tmp_path).answer_crc_retry is True


def test_other_variables_are_read(tmp_path: Path) -> None:
    environ = {
        "EFT_PORT": "1",
        "EFT_HOST": "127.0.0.1",
        "EFT_DATA_DIR": str(tmp_path / "store"),
        "EFT_IDLE_TIMEOUT": "2.5",
        "EFT_SHUTDOWN_GRACE": "3",
        "EFT_METRICS_PORT": "9100",
    }
    config = load_quietly([], environ, tmp_path)
    assert config.host == "127.0.0.1"
    assert config.data_dir == tmp_path / "store"
    assert config.idle_timeout == 2.5
    assert config.shutdown_grace == 3.0
    assert config.metrics_port == 9100


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EFT_PORT", "abc"),
        ("EFT_PORT", "70000"),
        ("EFT_PORT", "-1"),
        ("EFT_PORT", ""),
        ("EFT_PORT", " 80"),
        ("EFT_ANSWER_901", "maybe"),
        ("EFT_ANSWER_901", "2"),
        ("EFT_IDLE_TIMEOUT", "0"),
        ("EFT_IDLE_TIMEOUT", "-5"),
        ("EFT_IDLE_TIMEOUT", "soon"),
        ("EFT_SHUTDOWN_GRACE", "x"),
        ("EFT_METRICS_PORT", "99999"),
        ("EFT_LOG_FORMAT", "no-such-format"),
    ],
)
def test_a_bad_variable_exits_with_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    environ = {"EFT_PORT": "1", name: value}
    with pytest.raises(SystemExit) as exit_info:
        load_config([], environ, tmp_path)
    assert exit_info.value.code == 2
    assert name in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--port", "abc"], ["--port", "70000"], ["--idle-timeout", "0"], ["--bogus"]]
)
def test_a_bad_flag_exits_with_a_usage_error(tmp_path: Path, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_config(argv, {}, tmp_path)
    assert exit_info.value.code == 2


def test_a_good_flag_wins_over_a_bad_variable(tmp_path: Path) -> None:
    # The flag is taken first, so the variable it overrides is never parsed.
    assert load_quietly(["--port", "7777"], {"EFT_PORT": "abc"}, tmp_path).port == 7777


def test_listen_fd_takes_an_inherited_descriptor_and_no_port(tmp_path: Path) -> None:
    config = load_config(["--listen-fd", "5"], environ={}, cwd=tmp_path)
    assert config.listen_fd == 5
    assert load_config([], environ={"EFT_LISTEN_FD": "7"}, cwd=tmp_path).listen_fd == 7
    for bad in ("0", "2", "-1", "x"):
        with pytest.raises(SystemExit):
            load_config(["--listen-fd", bad], environ={}, cwd=tmp_path)


def test_the_registry_is_sqlite_unless_a_url_is_given(tmp_path: Path) -> None:
    write_port_info(tmp_path, "1234\n")
    assert load_quietly([], {}, tmp_path).registry is None  # SQLite in the data directory
    url = "postgresql://db/eft"
    assert load_quietly(["--registry", url], {}, tmp_path).registry == url
    assert load_quietly([], {"EFT_REGISTRY": url}, tmp_path).registry == url
