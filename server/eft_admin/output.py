"""What ``eft-admin`` prints: JSON with ``--json``, else aligned columns or key: value."""

from __future__ import annotations

import json
from typing import Any

_COLUMNS = {
    "list-clients": ("name", "version", "client_id", "files", "bytes", "last_seen", "revoked"),
    "list-files": ("client", "version", "file", "size", "stored_at", "last_seen"),
    "token-list": ("id", "state", "uses", "used", "expires_at", "name_pattern", "created_at"),
}
_ROWS = {"list-clients": "clients", "list-files": "files", "token-list": "tokens"}


def render(action: str, result: dict[str, Any], *, as_json: bool) -> str:
    rows = result.get(_ROWS[action]) if action in _ROWS else None
    if as_json:
        return json.dumps(rows if rows is not None else result, indent=1)
    if rows is None:
        return "\n".join(f"{key}: {_cell(value)}" for key, value in result.items())
    return _table(_COLUMNS[action], rows)


def _table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
