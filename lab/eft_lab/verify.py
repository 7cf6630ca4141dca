"""Does the server hold, byte for byte, every file a lab client counted as verified?"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path


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


def verify_manifests(client_dirs: list[Path], files_dirs: Path | list[Path]) -> Verification:
    """Each client's verified.jsonl against ``files_dir/<client id>/<file>``, in any of
    ``files_dirs`` (server replicas each keep their own, eft_lab.replicas).

    With reused names only the latest record of a name can still be on disk.
    """
    dirs = [files_dirs] if isinstance(files_dirs, Path) else files_dirs
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
            v4 = record.get("protocol") == 4
            bases = [d.parent / "v4" / "files" if v4 else d for d in dirs]
            stored = [base / client_id / name for base in bases]
            present = [path for path in stored if path.exists()]
            result.checked += 1
            if not present:
                result.problems.append(f"{client_dir.name}: {name} verified but not on the server")
            elif all(_sha256(path) != record["sha256"] for path in present):
                result.problems.append(f"{client_dir.name}: {name} differs on the server")
            else:
                result.bytes += int(str(record["size"]))
    return result


def count_stored_files(files_dirs: Path | list[Path]) -> int:
    """Committed files of both versions (version 4's live under <data>/v4/files)."""
    dirs = [files_dirs] if isinstance(files_dirs, Path) else files_dirs
    both = [d for files_dir in dirs for d in (files_dir, files_dir.parent / "v4" / "files")]
    return sum(1 for d in both for path in d.glob("*/*") if path.is_file())
