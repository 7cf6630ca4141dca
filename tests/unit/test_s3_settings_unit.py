"""``--store s3://…`` and the ``EFT_S3_*`` variables, read in-process: each bad input is a
one-line ``ValueError`` naming what to fix, and the secret never shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eft_server.s3_settings import S3Location, S3Settings, parse_store_url, s3_settings

HERE = S3Location("eft-files", "p")
KEYS = {"EFT_S3_ACCESS_KEY_ID": "id", "EFT_S3_SECRET_ACCESS_KEY": "secret"}


def test_keys_join_the_prefix_and_skip_empty_parts() -> None:
    assert S3Location("b", "a/b").key("v4", "x") == "a/b/v4/x"
    assert S3Location("b", "").key("files") == "files"
    assert S3Location("b", "p").key("") == "p"
    assert S3Location("b", "p").key() == "p"
    assert S3Location("b", "p").url("p/k") == "s3://b/p/k"


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://eft-files", S3Location("eft-files", "")),
        ("s3://eft-files/", S3Location("eft-files", "")),
        ("s3://eft-files/a/b/", S3Location("eft-files", "a/b")),
        ("s3://abc/x", S3Location("abc", "x")),  # 3 characters: the shortest
        ("s3://" + "a" * 63, S3Location("a" * 63, "")),  # 63: the longest
        ("s3://a.b-c9", S3Location("a.b-c9", "")),
        ("s3://9ab/x.y/z", S3Location("9ab", "x.y/z")),
        ("s3://abc/XX/X/", S3Location("abc", "XX/X")),  # only slashes are stripped
    ],
)
def test_good_store_urls(url: str, location: S3Location) -> None:
    assert parse_store_url(url) == location


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            "http://bucket/p",
            "'http://bucket/p' is not a store: give s3://bucket/prefix (or nothing",
        ),
        ("S3x://bucket/p", "is not a store"),
        ("s3://bucket/p?x=1", "'s3://bucket/p?x=1': a store URL has only a bucket and a prefix"),
        ("s3://bucket/p#f", "only a bucket and a prefix (credentials and the endpoint go in"),
        ("s3://key@bucket/p", "only a bucket and a prefix"),
        ("s3://key:secret@bucket/p", "only a bucket and a prefix"),
        ("s3://:secret@bucket/p", "only a bucket and a prefix"),
        ("s3://bucket:9000/p", "only a bucket and a prefix"),
        ("s3://", "'s3://' names no bucket: give s3://bucket/prefix"),
        ("s3:///p", "names no bucket"),
        ("s3://ab/p", "'ab' is not a bucket name (3 to 63 lowercase letters, digits, dots"),
        ("s3://" + "a" * 64, "is not a bucket name"),
        ("s3://-abc", "is not a bucket name"),
        ("s3://abc-", "is not a bucket name"),
        ("s3://ab_c", "is not a bucket name"),
        ("s3://a..b", "'a..b' is not a bucket name"),
        ("s3://bucket/a//b", "'s3://bucket/a//b': the prefix has an empty, . or .. segment"),
        ("s3://bucket/a/./b", "segment"),
        ("s3://bucket/../b", "segment"),
    ],
)
def test_bad_store_urls_say_what_to_fix(url: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_store_url(url)
    assert says in str(caught.value)


def test_a_url_with_credentials_points_at_the_variables() -> None:
    with pytest.raises(ValueError) as caught:
        parse_store_url("s3://k:s@bucket/p")
    assert str(caught.value) == (
        "'s3://k:s@bucket/p': a store URL has only a bucket and a prefix (credentials and "
        "the endpoint go in EFT_S3_* variables)"
    )


def test_settings_from_variables_with_defaults() -> None:
    settings = s3_settings(HERE, {**KEYS, "EFT_S3_ACCESS_KEY_ID": " id \n"})
    assert settings == S3Settings(HERE, None, "us-east-1", "id", "secret")
    given = s3_settings(
        HERE, {**KEYS, "EFT_S3_ENDPOINT": "https://s3.example:9000", "EFT_S3_REGION": "eu-west-3"}
    )
    assert (given.endpoint, given.region) == ("https://s3.example:9000", "eu-west-3")
    assert s3_settings(HERE, {**KEYS, "EFT_S3_ENDPOINT": "http://h"}).endpoint == "http://h"
    assert s3_settings(HERE, {**KEYS, "EFT_S3_REGION": ""}).region == "us-east-1"


def test_the_secret_never_shows() -> None:
    settings = S3Settings(HERE, "http://h:1", "r", "id", "s3cr3t")
    assert repr(settings) == (
        "S3Settings(S3Location(bucket='eft-files', prefix='p'), endpoint='http://h:1', region='r')"
    )
    assert "s3cr3t" not in str(settings)


@pytest.mark.parametrize("endpoint", ["ftp://h", "h:9000", "http://", "https:///x"])
def test_a_bad_endpoint_is_named(endpoint: str) -> None:
    with pytest.raises(ValueError) as caught:
        s3_settings(HERE, {**KEYS, "EFT_S3_ENDPOINT": endpoint})
    assert str(caught.value) == f"EFT_S3_ENDPOINT {endpoint!r} is not an http:// or https:// URL"


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "EFT_S3_ACCESS_KEY_ID and EFT_S3_SECRET_ACCESS_KEY"),
        ({"EFT_S3_ACCESS_KEY_ID": "id"}, "EFT_S3_SECRET_ACCESS_KEY"),
        ({"EFT_S3_SECRET_ACCESS_KEY": "s"}, "EFT_S3_ACCESS_KEY_ID"),
        ({"EFT_S3_ACCESS_KEY_ID": "", "EFT_S3_SECRET_ACCESS_KEY": "s"}, "EFT_S3_ACCESS_KEY_ID"),
    ],
)
def test_missing_keys_are_named(env: dict[str, str], missing: str) -> None:
    with pytest.raises(ValueError) as caught:
        s3_settings(HERE, env)
    assert str(caught.value) == (
        f"the S3 store needs {missing} (or the same name with _FILE: a file holding it)"
    )


def test_values_from_files(tmp_path: Path) -> None:
    key_id = tmp_path / "id"
    key_id.write_text("  from-file\n", encoding="utf-8")
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n", encoding="utf-8")
    region = tmp_path / "region"
    region.write_text("eu-north-1", encoding="utf-8")
    settings = s3_settings(
        HERE,
        {
            "EFT_S3_ACCESS_KEY_ID_FILE": str(key_id),
            "EFT_S3_SECRET_ACCESS_KEY_FILE": str(secret),
            "EFT_S3_REGION_FILE": str(region),
        },
    )
    assert (settings.access_key_id, settings.secret_access_key) == ("from-file", "s3cr3t")
    assert settings.region == "eu-north-1"
    # the variable itself comes first
    both = s3_settings(HERE, {**KEYS, "EFT_S3_SECRET_ACCESS_KEY_FILE": str(secret)})
    assert both.secret_access_key == "secret"
    # an empty variable falls back to its file
    empty = s3_settings(
        HERE, {**KEYS, "EFT_S3_SECRET_ACCESS_KEY": "", "EFT_S3_SECRET_ACCESS_KEY_FILE": str(secret)}
    )
    assert empty.secret_access_key == "s3cr3t"


def test_a_non_ascii_secret_file_is_utf_8(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes("clé-é\n".encode())
    settings = s3_settings(
        HERE, {"EFT_S3_ACCESS_KEY_ID": "id", "EFT_S3_SECRET_ACCESS_KEY_FILE": str(secret)}
    )
    assert settings.secret_access_key == "clé-é"


def test_an_unreadable_or_empty_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    with pytest.raises(ValueError) as unreadable:
        s3_settings(
            HERE, {"EFT_S3_ACCESS_KEY_ID": "id", "EFT_S3_SECRET_ACCESS_KEY_FILE": str(missing)}
        )
    assert str(unreadable.value).startswith(
        f"EFT_S3_SECRET_ACCESS_KEY_FILE: cannot read {missing}: "
    )
    assert unreadable.value.__cause__ is None and unreadable.value.__suppress_context__
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="EFT_S3_ACCESS_KEY_ID_FILE: cannot read"):
        s3_settings(HERE, {"EFT_S3_ACCESS_KEY_ID_FILE": str(binary)})
    blank = tmp_path / "blank"
    blank.write_text(" \n", encoding="utf-8")
    with pytest.raises(ValueError) as empty:
        s3_settings(
            HERE, {"EFT_S3_ACCESS_KEY_ID": "id", "EFT_S3_SECRET_ACCESS_KEY_FILE": str(blank)}
        )
    assert str(empty.value) == f"EFT_S3_SECRET_ACCESS_KEY_FILE: {blank} is empty"
    # an empty *_FILE variable: as if not given
    with pytest.raises(ValueError, match="needs EFT_S3_SECRET_ACCESS_KEY"):
        s3_settings(HERE, {"EFT_S3_ACCESS_KEY_ID": "id", "EFT_S3_SECRET_ACCESS_KEY_FILE": ""})


def test_a_secret_file_is_utf_8_whatever_the_locale(tmp_path: Path) -> None:
    """Under an ASCII locale (LC_ALL=C with Python's UTF-8 mode and locale coercion off,
    as on a host without a UTF-8 locale), the file is still read as UTF-8: the locale's
    encoding would refuse the secret or, under Latin-1, read another one. The interpreter
    fixes its locale encoding at start, so the settings are read in a child process (which
    runs the same modules: its import path is this one's)."""
    secret = tmp_path / "secret"
    secret.write_bytes("clé-é\n".encode())
    script = (
        "import sys\n"
        "from eft_server.s3_settings import S3Location, s3_settings\n"
        "env = {'EFT_S3_ACCESS_KEY_ID': 'id', 'EFT_S3_SECRET_ACCESS_KEY_FILE': sys.argv[1]}\n"
        "secret = s3_settings(S3Location('b', 'p'), env).secret_access_key\n"
        "sys.stdout.buffer.write(secret.encode('utf-8'))\n"
    )
    env = {
        **os.environ,
        "LC_ALL": "C",
        "PYTHONUTF8": "0",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    shown = subprocess.run(
        [sys.executable, "-c", script, str(secret)], env=env, capture_output=True, check=False
    )
    assert shown.returncode == 0, shown.stderr.decode(errors="replace")
    assert shown.stdout.decode("utf-8") == "clé-é"
    # the child really ran under an ASCII locale, or this test would prove nothing
    probe = subprocess.run(
        [sys.executable, "-c", "import locale; print(locale.getpreferredencoding(False))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() in {"ANSI_X3.4-1968", "ascii", "US-ASCII"}
