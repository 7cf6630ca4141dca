"""Does the server hold, byte for byte, every file a lab client counted as verified?

On a local disk (each server's data directory) or, for replicas sharing one store
(eft_lab.replicas), in S3: there each object is downloaded in chunks and hashed as it
comes, never held whole.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


@dataclass(frozen=True)
class S3Files:
    """The files servers stored in one bucket under one prefix (``--store
    s3://bucket/prefix``): version 3's under ``files/``, version 4's under ``v4/files/``,
    each at ``<client id>/<name>``, as on a local disk."""

    client: Any  # a blocking botocore S3 client
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, v4: bool, client_id: str, name: str) -> str:
        return "/".join((self.prefix, "v4/files" if v4 else "files", client_id, name))

    def sha256(self, key: str) -> str | None:
        """The object's SHA-256, streamed; None if there is no such object."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        digest = hashlib.sha256()
        body = answer["Body"]
        try:
            for chunk in body.iter_chunks(CHUNK):
                digest.update(chunk)
        finally:
            body.close()
        return digest.hexdigest()

    def keys(self) -> list[str]:
        """Every committed file's key (unfinished uploads live elsewhere, v4/unfinished)."""
        found = []
        for under in ("files", "v4/files"):
            start = f"{self.prefix}/{under}/"
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            )
            for page in pages:
                for entry in page.get("Contents", []):
                    rest = entry["Key"][len(start) :].split("/")
                    if len(rest) == 2 and all(rest):  # <client id>/<name>, no directories
                        found.append(entry["Key"])
        return found


@dataclass
class Verification:
    checked: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_manifests(
    client_dirs: list[Path], files_dirs: Path | list[Path] | S3Files
) -> Verification:
    """Each client's verified.jsonl against ``files_dir/<client id>/<file>``, in any of
    ``files_dirs`` (server replicas each keep their own), or in S3.

    With reused names only the latest record of a name can still be on disk.
    """
    result = Verification()
    for client_dir in client_dirs:
        manifest = client_dir / "verified.jsonl"
        if not manifest.exists():
            continue
        latest: dict[tuple[str, str], dict[str, object]] = {}
        for line in manifest.read_text().splitlines():
            record = json.loads(line)
            latest[(record["client_id"], record["file"])] = record
        for (client_id, name), record in latest.items():
            digests = _stored_digests(files_dirs, record.get("protocol") == 4, client_id, name)
            result.checked += 1
            if not digests:
                result.problems.append(f"{client_dir.name}: {name} verified but not on the server")
            elif record["sha256"] not in digests:
                result.problems.append(f"{client_dir.name}: {name} differs on the server")
            else:
                result.bytes += int(str(record["size"]))
    return result


def _stored_digests(
    files_dirs: Path | list[Path] | S3Files, v4: bool, client_id: str, name: str
) -> list[str]:
    """The SHA-256 of each stored copy of the file (none: not stored)."""
    if isinstance(files_dirs, S3Files):
        digest = files_dirs.sha256(files_dirs.key(v4, client_id, name))
        return [] if digest is None else [digest]
    dirs = [files_dirs] if isinstance(files_dirs, Path) else files_dirs
    bases = [d.parent / "v4" / "files" if v4 else d for d in dirs]
    stored = [base / client_id / name for base in bases]
    return [_sha256(path) for path in stored if path.exists()]


def count_stored_files(files_dirs: Path | list[Path] | S3Files) -> int:
    """Committed files of both versions (version 4's live under <data>/v4/files)."""
    if isinstance(files_dirs, S3Files):
        return len(files_dirs.keys())
    dirs = [files_dirs] if isinstance(files_dirs, Path) else files_dirs
    both = [d for files_dir in dirs for d in (files_dir, files_dir.parent / "v4" / "files")]
    return sum(1 for d in both for path in d.glob("*/*") if path.is_file())


def where_files_live(files_dirs: Path | list[Path] | S3Files) -> str:
    """For the summary: the directories, or the S3 location."""
    dirs = [files_dirs] if isinstance(files_dirs, Path) else files_dirs
    return str(dirs) if isinstance(dirs, S3Files) else ", ".join(str(d) for d in dirs)
