"""What a ``file_name`` from the wire may become on disk.

Spec section 2: "a bare file name; the server must never trust it as a path". Section 8:
some clients send their whole local path, so we keep the last component. What is left
must be a name every platform can store without surprises: not ``.`` or ``..``, no
drive or stream syntax, no characters Windows forbids, no DOS device name. Control and
non-ASCII characters never get this far (``wire.decode_string`` refuses them).
"""

from __future__ import annotations

import re

from . import errors

_FORBIDDEN = frozenset('<>:"|?*')
_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)
_PATH_SEPARATORS = re.compile(r"[/\\]")


def storage_name(file_name: str) -> str:
    """The base name to store ``file_name`` under; raises ``BadFileName`` if there is none."""
    base = _PATH_SEPARATORS.split(file_name)[-1]
    if base in ("", ".", ".."):
        raise errors.BadFileName(f"{file_name!r} does not end in a file name")
    bad = sorted(set(base) & _FORBIDDEN)
    if bad:
        raise errors.BadFileName(f"file name {base!r} contains {''.join(bad)!r}")
    if base != base.rstrip(". "):
        raise errors.BadFileName(f"file name {base!r} ends in a dot or a space")
    if base.split(".")[0].rstrip(" ").upper() in _DEVICE_NAMES:
        raise errors.BadFileName(f"file name {base!r} is a reserved device name")
    return base
