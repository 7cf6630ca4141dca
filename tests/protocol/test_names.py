"""What a wire ``file_name`` may become on disk (spec sections 2 and 8)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eft_protocol import errors
from eft_protocol.names import storage_name
from tests.support.examples import examples


@pytest.mark.parametrize(
    ("wire_name", "stored"),
    [
        ("x", "x"),
        ("report.pdf", "report.pdf"),
        ("../x", "x"),
        ("../../etc/passwd", "passwd"),
        ("C:\\dir\\x.txt", "x.txt"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/abs/path/f", "f"),
        ("mixed/sep\\name.bin", "name.bin"),
        (".hidden", ".hidden"),
        ("a..b", "a..b"),
        ("conference.txt", "conference.txt"),  # only the exact device names are reserved
        ("lpt10", "lpt10"),
        ("console", "console"),
        (" leading space", " leading space"),
    ],
)
def test_storage_name_keeps_only_the_base_name(wire_name: str, stored: str) -> None:
    assert storage_name(wire_name) == stored


@pytest.mark.parametrize(
    "wire_name",
    [
        "..",
        ".",
        "dir/",
        "dir\\",
        "/",
        "a/..",
        "C:\\dir\\..",
        "con",
        "CON",
        "CON.txt",
        "con .txt",
        "Nul",
        "aux.tar.gz",
        "prn",
        "com1",
        "COM9.log",
        "lpt1",
        "LPT9",
        "a:b",
        "C:x.txt",
        "file.txt:stream",
        "x?",
        "a*b",
        "a<b",
        "a>b",
        'a"b',
        "a|b",
        "trailing.",
        "trailing ",
        "name. ",
        "...",
    ],
)
def test_storage_name_refuses_names_that_cannot_be_stored(wire_name: str) -> None:
    with pytest.raises(errors.BadFileName):
        storage_name(wire_name)


DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10)}
wire_names = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=254
)


@settings(max_examples=examples(300), deadline=None)
@given(wire_name=wire_names)
def test_anything_accepted_is_a_safe_base_name(wire_name: str) -> None:
    try:
        stored = storage_name(wire_name)
    except errors.BadFileName:
        return
    assert stored
    assert wire_name.endswith(stored)
    assert "/" not in stored and "\\" not in stored
    assert stored not in (".", "..")
    assert not set(stored) & set('<>:"|?*')
    assert not stored.endswith((".", " "))
    assert stored.split(".")[0].strip().upper() not in DEVICES
    assert storage_name(stored) == stored  # idempotent


@settings(max_examples=examples(200), deadline=None)
@given(
    directories=st.lists(
        st.sampled_from(["..", ".", "dir", "C:", "a b", "", "con", "x?"]), max_size=5
    ),
    separator=st.sampled_from(["/", "\\"]),
    middle=st.text(alphabet="abcXYZ019_-. ", max_size=30),
)
def test_any_path_prefix_is_dropped(directories: list[str], separator: str, middle: str) -> None:
    base = f"f{middle}z"  # starts and ends safely, and is never a device name
    wire_name = separator.join([*directories, base])
    assert storage_name(wire_name) == base


# Found by mutation testing (docs/TESTING.md): names next to the rules' edges, and the
# reason each refusal gives (it reaches the server's log as the error's detail).


@pytest.mark.parametrize("wire_name", ["BOX", "fileX", "NULX.txt", "AUXX", "COMX1", "X. x"])
def test_names_beside_the_rules_edges_are_stored_as_they_are(wire_name: str) -> None:
    assert storage_name(wire_name) == wire_name


@pytest.mark.parametrize(
    ("wire_name", "why"),
    [
        ("", "does not end in a file name"),
        ("dir/.", "does not end in a file name"),
        ("..", "does not end in a file name"),
        ("a<b>c", "contains '<>'"),
        ('x?"y', "contains '\"?'"),
        ("name.", "ends in a dot or a space"),
        ("name ", "ends in a dot or a space"),
        ("nul.txt", "is a reserved device name"),
        ("COM1 .log", "is a reserved device name"),
    ],
)
def test_each_refusal_says_why(wire_name: str, why: str) -> None:
    with pytest.raises(errors.BadFileName) as refused:
        storage_name(wire_name)
    assert why in str(refused.value)
