"""What a version-4 file name may be: a relative UTF-8 path, checked part by part.

Version 4 stores ``report (final).pdf``, ``résumé.pdf`` and ``photos/2024/img 1.jpg``
under the client's own directory, so a name is a path of components separated by ``/``
and each component must be a name every platform can store and nobody can use to get
out: not empty, not ``.`` or ``..``, no backslash, no character Windows forbids, no
trailing dot or space, no DOS device name. The wire carries the NFC form (one spelling
per name: ``é`` precomposed), which the sender makes with ``normalise`` and the receiver
demands, so two byte strings never name the same stored file.

Characters refused anywhere: Unicode categories Cc (controls, NUL and DEL included), Cf
(format characters: the bidirectional overrides that disguise ``gpj.exe`` as
``exe.jpg``, zero-width spaces, the BOM), Cs (surrogates), Zl and Zp (line and paragraph
separators); except ZWNJ and ZWJ (U+200C, U+200D), which Persian, Indic scripts and
emoji sequences need. Unassigned code points are allowed: peers on different Unicode
versions would otherwise disagree about the same name.

Each refusal has its own ``reason`` (a short word), so a refused name says what was
wrong with it and the tests can tell the refusals apart.
"""

from __future__ import annotations

import unicodedata

#: Bytes of UTF-8 in one component (NAME_MAX of Linux and most file systems).
MAX_COMPONENT_BYTES = 255
#: Bytes of UTF-8 in a whole path, separators included.
MAX_PATH_BYTES = 1024
#: Components in a path (``a/b/c`` is 3).
MAX_DEPTH = 32

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_JOINERS = frozenset({"\u200c", "\u200d"})
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)


class BadPath(ValueError):
    """A name version 4 refuses; ``reason`` says which rule it broke."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def normalise(name: str) -> str:
    """The form to send: NFC, then checked (raises ``BadPath``)."""
    return check_path(unicodedata.normalize("NFC", name))


def decode_path(raw: bytes) -> str:
    """A name off the wire: strict UTF-8 in NFC, checked (raises ``BadPath``)."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("not_utf8", "the name is not valid UTF-8") from None
    return check_path(name)


def components(name: str) -> list[str]:
    """The parts of a checked name: the directories, then the file's own name."""
    return name.split("/")


def check_path(name: str) -> str:
    """``name`` if version 4 accepts it as sent; raises ``BadPath`` otherwise."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size == 0:
        raise BadPath("empty", "the name is empty")
    if size > MAX_PATH_BYTES:
        raise BadPath("too_long", f"the name is {size} bytes; at most {MAX_PATH_BYTES}")
    # ASCII is always NFC; most names are ASCII, and the check costs a microsecond or
    # two per name on both sides (issue 25: thousands of files a second).
    if not name.isascii() and not unicodedata.is_normalized("NFC", name):
        raise BadPath("not_nfc", f"{name!r} is not in Unicode NFC form")
    if "\\" in name:
        raise BadPath("backslash", f"{name!r} contains a backslash; folders are separated by /")
    if name.startswith("/"):
        raise BadPath("absolute", f"{name!r} is an absolute path; only relative ones are stored")
    parts = components(name)
    if len(parts) > MAX_DEPTH:
        raise BadPath("too_deep", f"{name!r} is {len(parts)} levels deep; at most {MAX_DEPTH}")
    for part in parts:
        _check_component(name, part)
    return name


def _check_component(name: str, part: str) -> None:
    if part == "":
        raise BadPath("empty_component", f"{name!r} has an empty component (// or a final /)")
    if part in (".", ".."):
        raise BadPath("dot_component", f"{name!r} has a {part!r} component")
    if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
        raise BadPath(
            "component_too_long", f"a component of {name!r} is over {MAX_COMPONENT_BYTES} bytes"
        )
    # Printable ASCII has no character of the refused categories (the ASCII controls,
    # Cc, are not printable): the per-character look-up only for the rest.
    if not (part.isascii() and part.isprintable()):
        for char in part:
            if unicodedata.category(char) in _REFUSED_CATEGORIES and char not in _JOINERS:
                raise BadPath(
                    "control_character",
                    f"{name!r} contains the control character U+{ord(char):04X}",
                )
    forbidden = sorted(set(part) & _WINDOWS_FORBIDDEN)
    if forbidden:
        raise BadPath("forbidden_character", f"{name!r} contains {''.join(forbidden)!r}")
    if part != part.rstrip(". "):
        raise BadPath("trailing_dot_or_space", f"{part!r} in {name!r} ends in a dot or a space")
    if part.split(".", maxsplit=1)[0].rstrip(" ").upper() in _DEVICE_NAMES:
        raise BadPath("device_name", f"{part!r} in {name!r} is a reserved device name")
