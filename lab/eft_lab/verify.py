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


def verify_manifests(client_dirs: list[Path], files_dir: Path) -> Verification:
    """Each client's verified.jsonl against ``files_dir/<client id>/<file>``.

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
            base = files_dir.parent / "v4" / "files" if record.get("protocol") == 4 else files_dir
            stored = base / client_id / name
            result.checked += 1
            if not stored.exists():
                result.problems.append(f"{client_dir.name}: {name} verified but not on the server")
            elif _sha256(stored) != record["sha256"]:
                result.problems.append(f"{client_dir.name}: {name} differs on the server")
            else:
                result.bytes += int(str(record["size"]))
    return result


def count_stored_files(files_dir: Path) -> int:
    """Committed files of both versions (version 4's live under <data>/v4/files)."""
    v4_dir = files_dir.parent / "v4" / "files"
    return sum(1 for d in (files_dir, v4_dir) for path in d.glob("*/*") if path.is_file())
