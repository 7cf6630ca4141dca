"""Version 4's names (eft_protocol.v4.paths): the names people use are accepted, and
each hostile one is refused for its own reason."""

from __future__ import annotations

import unicodedata

import pytest

from eft_protocol.v4 import paths

ACCEPTED = [
    "report (final).pdf",
    "résumé.pdf",
    "a+b@c.txt",
    "photos/2024/img 1.jpg",
    ".bashrc",
    "src/.git/config",
    "日本語のファイル.txt",
    "مستند.txt",
    "emoji 👨\u200d👩\u200d👧.png",  # ZWJ sequences are allowed
    "x" * 255,
    "/".join(["d"] * 31) + "/f",
]

REFUSED = {
    "": "empty",
    "/etc/passwd": "absolute",
    "../x": "dot_component",
    "a/../../x": "dot_component",
    "./x": "dot_component",
    "a/./b": "dot_component",
    "..": "dot_component",
    "a//b": "empty_component",
    "a/": "empty_component",
    "a\\b": "backslash",
    "..\\..\\x": "backslash",
    "C:x.txt": "forbidden_character",
    "x.txt::$DATA": "forbidden_character",
    "a\x00b": "control_character",
    "line\nbreak": "control_character",
    "del\x7f": "control_character",
    "gpj\u202eexe.txt": "control_character",  # a bidirectional override
    "zero\u200bwidth": "control_character",
    "\ufeffbom": "control_character",
    "para\u2029sep": "control_character",
    "CON": "device_name",
    "dir/nul.txt": "device_name",
    "Com1.log": "device_name",
    "trail.": "trailing_dot_or_space",
    "dir./f": "trailing_dot_or_space",
    "trail ": "trailing_dot_or_space",
    "x" * 256: "component_too_long",
    "é" * 128: "component_too_long",  # 256 bytes of UTF-8
    "/".join(["d"] * 32) + "/f": "too_deep",
    "/".join(["d" * 200] * 6): "too_long",
    "re\u0301sume\u0301.pdf": "not_nfc",  # decomposed: the sender normalises
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_names_people_use_are_accepted_as_they_are(name: str) -> None:
    assert paths.check_path(name) == name
    assert paths.decode_path(name.encode()) == name


@pytest.mark.parametrize(("name", "reason"), sorted(REFUSED.items()), ids=sorted(REFUSED.values()))
def test_each_hostile_name_is_refused_for_its_own_reason(name: str, reason: str) -> None:
    with pytest.raises(paths.BadPath) as refused:
        paths.check_path(name)
    assert refused.value.reason == reason


def test_a_decomposed_name_is_normalised_by_the_sender() -> None:
    decomposed = unicodedata.normalize("NFD", "résumé.pdf")
    assert decomposed != "résumé.pdf"
    assert paths.normalise(decomposed) == "résumé.pdf"


def test_bytes_that_are_not_utf8_are_refused_as_such() -> None:
    with pytest.raises(paths.BadPath) as refused:
        paths.decode_path(b"caf\xe9.txt")
    assert refused.value.reason == "not_utf8"


def test_components_are_the_folders_then_the_file() -> None:
    assert paths.components("photos/2024/img 1.jpg") == ["photos", "2024", "img 1.jpg"]
