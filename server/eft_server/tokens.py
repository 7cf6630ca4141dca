"""Invitation tokens: the operator hands one out, a client's first contact carries it,
and the registration it admits spends one of its uses (docs/OPERATIONS.md).

Only a token's SHA-256 is kept (``<data>/tokens.json``, 0600, rewritten atomically):
the server never holds a token in plaintext, so a copy of its data directory admits no
one. A token is 160 random bits, so a plain hash is enough (no slow hash: there is
nothing to guess). Its id, the hash's first 12 hex digits, names it in ``token list``
and ``token revoke``.

A use is spent when the registration is granted, on the event loop, before the session
stores the client and before the answer is written: two registrations racing for the
last use cannot both have it (the file is written, fsynced, before the first one's
answer). A registration that fails after that (the disk) has spent its use.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .storage import FILE_MODE, _fsync_directory

TOKENS_FILE = "tokens.json"
TOKEN_PREFIX = "eft_"  # noqa: S105 (a prefix that says what the text is)
#: Why a token admits nobody: the ``reason`` of ``eft_registrations_refused_total``.
TOKEN_REFUSALS = (
    "no_token",
    "bad_token",
    "token_expired",
    "token_used",
    "token_revoked",
    "token_name",
)
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """Seconds in ``30m``, ``12h``, ``7d``, ``1w2d`` (a bare number is seconds)."""
    if text.isdigit():
        return int(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 30m, 12h, 7d")
    return sum(int(number) * _UNITS[unit] for number, unit in parts)


def token_hash(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()


@dataclass(frozen=True)
class Token:
    id: str
    sha256: str
    created_at: float
    uses: int  # how many registrations it admits in all
    used: int = 0
    expires_at: float | None = None
    name_pattern: str | None = None
    revoked: bool = False
    used_by: list[str] = field(default_factory=list)

    def refusal(self, name: str, now: float) -> str | None:
        if self.revoked:
            return "token_revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "token_expired"
        if self.used >= self.uses:
            return "token_used"
        if self.name_pattern is not None and not fnmatch.fnmatchcase(name, self.name_pattern):
            return "token_name"
        return None

    def state(self, now: float) -> str:
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "used up" if self.used >= self.uses else "valid"

    def describe(self, now: float) -> dict[str, Any]:
        """What ``token list`` shows: the id, never the hash."""
        return {
            "id": self.id,
            "state": self.state(now),
            "uses": self.uses,
            "used": self.used,
            "expires_at": self.expires_at,
            "name_pattern": self.name_pattern,
            "created_at": self.created_at,
            "used_by": list(self.used_by),
        }


class TokenStore:
    """The tokens, by hash; ``path`` None keeps them in memory (``--ephemeral``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._tokens: dict[str, Token] = {}
        if path is not None and path.exists():
            for entry in json.loads(path.read_text(encoding="utf-8")).get("tokens", []):
                entry["used_by"] = list(entry.get("used_by", []))
                token = Token(**entry)
                self._tokens[token.sha256] = token

    def __len__(self) -> int:
        return len(self._tokens)

    def create(
        self, now: float, uses: int = 1, lifetime: int | None = None, pattern: str | None = None
    ) -> tuple[str, Token]:
        """A new token: its text (shown once, never stored) and its record."""
        if uses < 1:
            raise ValueError("a token admits at least one registration (--uses 1 or more)")
        text = TOKEN_PREFIX + base64.b32encode(secrets.token_bytes(20)).decode().lower()
        digest = token_hash(text.encode())
        token = Token(
            digest[:12],
            digest,
            now,
            uses,
            expires_at=None if lifetime is None else now + lifetime,
            name_pattern=pattern,
        )
        self._tokens[digest] = token
        self._save()
        return text, token

    def find(self, token_id: str) -> Token | None:
        for token in self._tokens.values():
            if token.id == token_id:
                return token
        return None

    def revoke(self, token_id: str) -> Token | None:
        token = self.find(token_id)
        if token is not None:
            self._tokens[token.sha256] = replace(token, revoked=True)
            self._save()
        return token

    def all(self) -> list[Token]:
        return sorted(self._tokens.values(), key=lambda t: (t.created_at, t.id))

    def check(self, presented: bytes, name: str, now: float) -> tuple[str | None, Token | None]:
        """Why ``presented`` admits no registration of ``name`` now (or None, and the
        token to ``spend`` once every other rule has let the registration through)."""
        if not presented:
            return "no_token", None
        token = self._tokens.get(token_hash(presented))
        if token is None:
            return "bad_token", None
        return token.refusal(name, now), token

    def spend(self, token: Token, name: str) -> None:
        current = self._tokens[token.sha256]
        self._tokens[token.sha256] = replace(
            current, used=current.used + 1, used_by=[*current.used_by, name]
        )
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"tokens": [asdict(token) for token in self.all()]}
        temp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)
        _fsync_directory(self.path.parent)
