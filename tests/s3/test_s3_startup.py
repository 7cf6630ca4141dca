"""Every bad input for the S3 store is one clear error before serving: a bad URL is a
bad flag (exit 2); missing credentials, an unreachable endpoint, refused credentials
and a missing bucket are ``store_unusable`` (exit 9), each naming what to fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eft_server.s3_settings import S3Location, parse_store_url, s3_settings
from eft_server.startup import StoreUnusable
from tests.support.processes import clean_env
from tests.support.seaweedfs import SeaweedFS, allocate_ports


def _start(tmp_path: Path, store: str, env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eft_server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--log-format",
            "json",
            "--store",
            store,
        ],
        capture_output=True,
        env={**clean_env(), **env},
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout.decode() + done.stderr.decode()


def _message(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "store_unusable":
            return str(json.loads(line)["message"])
    raise AssertionError(f"no store_unusable line in {output!r}")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://", "names no bucket"),
        ("http://bucket/p", "is not a store"),
        ("s3://Bad_Bucket/p", "is not a bucket name"),
        ("s3://key:secret@bucket/p", "credentials and the endpoint go in EFT_S3_"),
        ("s3://bucket/a//b", "empty, . or .. segment"),
    ],
)
def test_a_bad_store_url_is_a_bad_flag(url: str, says: str, tmp_path: Path) -> None:
    code, output = _start(tmp_path, url, {})
    assert code == 2 and says in output, output
    with pytest.raises(ValueError, match=r"."):
        parse_store_url(url)


def test_a_good_url_and_secrets_from_files(tmp_path: Path) -> None:
    assert parse_store_url("s3://eft-files") == S3Location("eft-files", "")
    assert parse_store_url("s3://eft-files/a/b/").key("v4", "x") == "a/b/v4/x"
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    settings = s3_settings(
        S3Location("eft-files", ""),
        {"EFT_S3_ACCESS_KEY_ID": "id", "EFT_S3_SECRET_ACCESS_KEY_FILE": str(secret)},
    )
    assert settings.secret_access_key == "s3cr3t" and "s3cr3t" not in repr(settings)
    with pytest.raises(ValueError, match="EFT_S3_SECRET_ACCESS_KEY"):
        s3_settings(S3Location("eft-files", ""), {"EFT_S3_ACCESS_KEY_ID": "id"})
    with pytest.raises(ValueError, match="cannot read"):
        s3_settings(
            S3Location("eft-files", ""),
            {"EFT_S3_ACCESS_KEY_ID": "id", "EFT_S3_SECRET_ACCESS_KEY_FILE": str(tmp_path / "no")},
        )


def test_each_unusable_store_stops_the_server_with_exit_9(
    tmp_path: Path, seaweedfs: SeaweedFS, bucket: str
) -> None:
    good = seaweedfs.server_env()
    (nobody,) = allocate_ports(1)  # free: nothing listens there
    cases = {
        "missing credentials": (
            f"s3://{bucket}/p",
            {"EFT_S3_ENDPOINT": seaweedfs.endpoint},
            "needs EFT_S3_ACCESS_KEY_ID and EFT_S3_SECRET_ACCESS_KEY",
        ),
        "unreachable endpoint": (
            f"s3://{bucket}/p",
            {**good, "EFT_S3_ENDPOINT": f"http://127.0.0.1:{nobody}"},
            f"cannot reach the S3 endpoint http://127.0.0.1:{nobody}",
        ),
        "bad credentials": (
            f"s3://{bucket}/p",
            {**good, "EFT_S3_ACCESS_KEY_ID": "nobody-we-know"},
            "refused the credentials",
        ),
        "missing bucket": (
            "s3://no-such-bucket-here/p",
            good,
            "the bucket 'no-such-bucket-here' does not exist",
        ),
    }
    for case, (store, env, says) in cases.items():
        code, output = _start(tmp_path / case.replace(" ", "-"), store, env)
        assert code == StoreUnusable.exit_code, (case, output)
        assert says in _message(output), (case, output)
