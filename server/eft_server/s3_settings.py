"""Where the S3 store is and how to sign in: ``--store s3://bucket/prefix`` and the
``EFT_S3_*`` variables.

The secret never comes from the command line (any user sees a process's arguments in
``ps``): it comes from a variable, or from a file named by one (``*_FILE``, the way
container secrets are mounted). Every bad input is a one-line ``ValueError`` that names
what to fix; the server turns it into ``store_unusable`` (exit 9) before serving.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

#: S3's bucket naming rules (the strict ones, valid on every S3 implementation).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    #: Keys start with this (no leading or trailing slash; empty: the bucket's root).
    prefix: str

    def key(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def parse_store_url(text: str) -> S3Location:
    """``s3://bucket`` or ``s3://bucket/some/prefix``."""
    parts = urlsplit(text)
    if parts.scheme != "s3":
        raise ValueError(f"{text!r} is not a store: give s3://bucket/prefix (or nothing: local)")
    if parts.query or parts.fragment or parts.username or parts.password or parts.port:
        raise ValueError(
            f"{text!r}: a store URL has only a bucket and a prefix (credentials and the "
            "endpoint go in EFT_S3_* variables)"
        )
    bucket = parts.hostname or ""
    if not bucket:
        raise ValueError(f"{text!r} names no bucket: give s3://bucket/prefix")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"{bucket!r} is not a bucket name (3 to 63 lowercase letters, digits, dots, hyphens)"
        )
    prefix = parts.path.strip("/")
    if prefix and any(piece in ("", ".", "..") for piece in prefix.split("/")):
        raise ValueError(f"{text!r}: the prefix has an empty, . or .. segment")
    return S3Location(bucket, prefix)


@dataclass(frozen=True)
class S3Settings:
    location: S3Location
    endpoint: str | None  # None: AWS's own, chosen by region
    region: str
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never the secret in a log or a traceback
        return f"S3Settings({self.location}, endpoint={self.endpoint!r}, region={self.region!r})"


def s3_settings(location: S3Location, env: Mapping[str, str]) -> S3Settings:
    endpoint = _value(env, "EFT_S3_ENDPOINT")
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"EFT_S3_ENDPOINT {endpoint!r} is not an http:// or https:// URL")
    key_id = _value(env, "EFT_S3_ACCESS_KEY_ID")
    secret = _value(env, "EFT_S3_SECRET_ACCESS_KEY")
    if key_id is None or secret is None:
        missing = [
            name
            for name, value in (
                ("EFT_S3_ACCESS_KEY_ID", key_id),
                ("EFT_S3_SECRET_ACCESS_KEY", secret),
            )
            if value is None
        ]
        raise ValueError(
            f"the S3 store needs {' and '.join(missing)} (or the same name with _FILE: a file "
            "holding it)"
        )
    region = _value(env, "EFT_S3_REGION") or "us-east-1"
    return S3Settings(location, endpoint, region, key_id, secret)


def _value(env: Mapping[str, str], name: str) -> str | None:
    """``NAME``, else the contents of the file ``NAME_FILE`` names (stripped)."""
    if env.get(name):
        return env[name].strip()
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name}_FILE: cannot read {path}: {exc}") from None
    if not value:
        raise ValueError(f"{name}_FILE: {path} is empty")
    return value
