"""The client's documented defaults, pinned: how long and how often it reconnects,
how long it waits, what it sends. A changed default changes what every user gets, so it
must be a deliberate edit of this file too (README.md and ``--help`` state them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eft_client.cli import build_parser, settings_from
from eft_client.errors import ConfigError
from eft_client.settings import ClientSettings
from eft_protocol import client_session

REQUIRED = ["--server", "127.0.0.1:1", "--name", "alice"]


def settings(tmp_path: Path, *args: str, environ: dict[str, str] | None = None) -> ClientSettings:
    argv = [*REQUIRED, "--config-dir", str(tmp_path), *args, "file.bin"]
    parsed, files = settings_from(build_parser().parse_args(argv), environ or {})
    assert files == [Path("file.bin")]
    return parsed


def test_by_default_reconnects_for_a_minute_with_no_cap_on_the_count(tmp_path: Path) -> None:
    chosen = settings(tmp_path)
    assert chosen.retries is None, "--retries is optional: as many as --retry-for allows"
    assert chosen.retry_for == 60.0
    assert (chosen.backoff, chosen.backoff_cap) == (0.5, 5.0)


def test_waits_ten_seconds_to_connect_and_a_minute_for_an_answer(tmp_path: Path) -> None:
    chosen = settings(tmp_path)
    assert chosen.connect_timeout == 10.0
    assert chosen.response_timeout == 60.0
    assert chosen.packet_size == 256 * 1024


def test_retries_from_the_option_or_the_environment(tmp_path: Path) -> None:
    assert settings(tmp_path, "--retries", "5").retries == 5
    assert settings(tmp_path, "--retries", "0").retries == 0
    assert settings(tmp_path, environ={"EFT_RETRIES": "2"}).retries == 2
    assert settings(tmp_path, "--retries", "7", environ={"EFT_RETRIES": "2"}).retries == 7
    assert settings(tmp_path, "--retry-for", "0").retry_for == 0.0
    assert settings(tmp_path, environ={"EFT_RETRY_FOR": "2.5"}).retry_for == 2.5


@pytest.mark.parametrize(
    ("args", "environ"),
    [
        (["--retries", "-1"], {}),
        ([], {"EFT_RETRIES": "three"}),
        (["--retry-for", "-1"], {}),
        (["--retry-for", "nan"], {}),
    ],
)
def test_bad_retry_settings_are_config_errors(
    tmp_path: Path, args: list[str], environ: dict[str, str]
) -> None:
    with pytest.raises(ConfigError):
        settings(tmp_path, *args, environ=environ)


def test_the_help_states_the_defaults() -> None:
    text = " ".join(build_parser().format_help().split())
    assert "default 60; 0: never" in text  # --retry-for
    assert "default: as many as --retry-for allows" in text  # --retries


def test_a_request_answered_1607_is_sent_four_times_and_a_file_tried_four_times() -> None:
    # Spec section 4: the first try and three retries, for a request and for a file.
    assert client_session.MAX_REQUEST_TRIES == 4
    assert client_session.MAX_FILE_ATTEMPTS == 4
