"""Each rule of ``eft_protocol.v4.paths`` at its edge, with the exact words a refused
name is told in (the client shows them): test_paths.py covers the rules' spirit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eft_protocol.v4 import paths
from eft_protocol.v4.paths import BadPath


@pytest.mark.parametrize(
    ("name", "reason", "message"),
    [
        ("", "empty", "the name is empty"),
        ("a" * 1025, "too_long", "the name is 1025 bytes; at most 1024"),
        ("e\u0301", "not_nfc", "'e\u0301' is not in Unicode NFC form"),
        ("a\\b", "backslash", "'a\\\\b' contains a backslash; folders are separated by /"),
        ("/a", "absolute", "'/a' is an absolute path; only relative ones are stored"),
        ("a/" * 32 + "a", "too_deep", f"{'a/' * 32 + 'a'!r} is 33 levels deep; at most 32"),
        ("a//b", "empty_component", "'a//b' has an empty component (// or a final /)"),
        ("a/", "empty_component", "'a/' has an empty component (// or a final /)"),
        ("a/./b", "dot_component", "'a/./b' has a '.' component"),
        ("../b", "dot_component", "'../b' has a '..' component"),
        ("b" * 256, "component_too_long", f"a component of {'b' * 256!r} is over 255 bytes"),
        ("a\x00b", "control_character", "'a\\x00b' contains the control character U+0000"),
        ("a\u202eb", "control_character", "'a\\u202eb' contains the control character U+202E"),
        ("a\u2028", "control_character", "'a\\u2028' contains the control character U+2028"),
        ("a>b<c", "forbidden_character", "'a>b<c' contains '<>'"),
        ("a:b", "forbidden_character", "'a:b' contains ':'"),
        ("a.", "trailing_dot_or_space", "'a.' in 'a.' ends in a dot or a space"),
        ("x/a ", "trailing_dot_or_space", "'a ' in 'x/a ' ends in a dot or a space"),
        ("con", "device_name", "'con' in 'con' is a reserved device name"),
        ("d/NUL .txt", "device_name", "'NUL .txt' in 'd/NUL .txt' is a reserved device name"),
        ("LPT9.a.b", "device_name", "'LPT9.a.b' in 'LPT9.a.b' is a reserved device name"),
        ("COM1", "device_name", "'COM1' in 'COM1' is a reserved device name"),
    ],
)
def test_each_refusal_has_its_reason_and_words(name: str, reason: str, message: str) -> None:
    with pytest.raises(BadPath) as refused:
        paths.check_path(name)
    assert refused.value.reason == reason
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "name",
    [
        "a" * 255 + "/" + "b" * 255 + "/" + "c" * 255 + "/" + "d" * 255,  # 1023 bytes
        "a/" * 31 + "a",  # 32 levels
        "é" * 127,  # 254 bytes in one component
        "a\u200cb\u200d",  # the joiners
        "COM0",
        "LPT10",
        "CONSOLE",
        "x.con",
        ".hidden",
        "a b",
        "boX",  # only dots and spaces trail badly
        "CONX",  # only spaces are stripped before the device check
        "CON\u00a0",  # a no-break space is not a space to Windows
    ],
)
def test_names_at_the_edges_are_kept(name: str) -> None:
    assert paths.check_path(name) == name


def test_the_limits() -> None:
    assert (paths.MAX_COMPONENT_BYTES, paths.MAX_PATH_BYTES, paths.MAX_DEPTH) == (255, 1024, 32)
    assert paths.check_path("a" * 255) == "a" * 255
    longest = "/".join(["a" * 200] * 5) + "/" + "b" * 19  # 1000 + 5 separators + 19
    assert len(longest) == 1024 and paths.check_path(longest) == longest
    with pytest.raises(BadPath, match="1025 bytes"):
        paths.check_path(longest + "b")


def test_sizes_are_counted_in_utf8_bytes() -> None:
    assert paths.check_path("é" * 127) == "é" * 127
    with pytest.raises(BadPath) as refused:
        paths.check_path("é" * 128)  # 256 bytes
    assert refused.value.reason == "component_too_long"
    with pytest.raises(BadPath) as refused:
        paths.check_path("/".join(["é" * 100] * 5) + "/" + "é" * 13)  # 1000 + 5 + 26 bytes
    assert refused.value.reason == "too_long"


def test_a_lone_surrogate_is_a_control_character_not_a_crash() -> None:
    with pytest.raises(BadPath) as refused:
        paths.check_path("a\ud800")
    assert refused.value.reason == "control_character"


def test_normalise_makes_nfc_then_checks() -> None:
    assert paths.normalise("re\u0301sume\u0301") == "résumé"
    with pytest.raises(BadPath, match="empty"):
        paths.normalise("")


def test_decode_path_wants_strict_utf8() -> None:
    assert paths.decode_path("résumé/ü".encode()) == "résumé/ü"
    with pytest.raises(BadPath) as refused:
        paths.decode_path(b"\xff")
    assert (refused.value.reason, str(refused.value)) == (
        "not_utf8",
        "the name is not valid UTF-8",
    )
    with pytest.raises(BadPath) as refused:
        paths.decode_path("e\u0301".encode())
    assert refused.value.reason == "not_nfc"


def test_components() -> None:
    assert paths.components("a/b/c.txt") == ["a", "b", "c.txt"]
    assert paths.components("c") == ["c"]


def test_a_bad_path_is_a_value_error() -> None:
    assert issubclass(BadPath, ValueError)
    assert BadPath("r", "m").reason == "r"


def _reference_verdict(name: str) -> str | None:
    """The rules as first written (issue 21), every character looked up, for the
    property below: the fast paths for ASCII (issue 25) must agree with it."""
    import unicodedata  # noqa: PLC0415

    if unicodedata.normalize("NFC", name) != name:
        return "not_nfc"
    for char in name:
        if unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zl", "Zp"} and char not in (
            "\u200c",
            "\u200d",
        ):
            return "control_character"
    return None


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_the_ascii_fast_paths_refuse_what_the_character_look_up_refuses(name: str) -> None:
    """A name the per-character rules refuse is refused; a refusal for NFC or a control
    character is one the per-character rules make (no false refusal either)."""
    expected = _reference_verdict(name)
    refused_by = None
    try:
        paths.check_path(name)
    except BadPath as exc:
        refused_by = exc.reason
    if expected is not None:
        assert refused_by is not None, f"{name!r} accepted, the reference says {expected}"
    if refused_by in {"not_nfc", "control_character"}:
        assert expected == refused_by


@pytest.mark.parametrize("code", [*range(32), 127])
def test_every_ascii_control_is_refused_in_a_component(code: int) -> None:
    with pytest.raises(BadPath) as raised:
        paths.check_path(f"dir/a{chr(code)}b")
    assert raised.value.reason == "control_character"
