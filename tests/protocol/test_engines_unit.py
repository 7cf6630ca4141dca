"""``eft_protocol.engines``: which engine a setting of ``EFT_AES_BACKEND`` picks, with
and without OpenSSL, and the warnings a wrong setting gets (pointing at its caller)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from eft_protocol import engines


@pytest.fixture
def engines_kept() -> Iterator[None]:
    before = (engines.ENCRYPT_BACKEND, engines.DECRYPT_BACKEND)
    yield
    engines.ENCRYPT_BACKEND, engines.DECRYPT_BACKEND = before


def _choice(setting: str) -> tuple[tuple[str, str], list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choice = engines.backend_choice(setting)
    return choice, caught


@pytest.mark.parametrize("setting", ["auto", "", "  ", " AUTO ", "OpenSSL", "openssl\n"])
def test_auto_and_openssl_with_openssl_installed(
    setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "_HAVE_OPENSSL", True)
    assert _choice(setting) == (("openssl", "openssl"), [])


@pytest.mark.parametrize("setting", ["pycryptodome", " PyCryptodome "])
@pytest.mark.parametrize("installed", [True, False])
def test_pycryptodome_is_always_pycryptodome(
    setting: str, installed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "_HAVE_OPENSSL", installed)
    assert _choice(setting) == (("pycryptodome", "pycryptodome"), [])


@pytest.mark.parametrize("setting", ["auto", "", "rot13"])
def test_without_openssl_auto_is_pycryptodome_quietly(
    setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "_HAVE_OPENSSL", False)
    assert _choice(setting) == (("pycryptodome", "pycryptodome"), [])
    assert engines.openssl_available() is False


def test_openssl_asked_without_it_warns_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "_HAVE_OPENSSL", False)
    choice, caught = _choice("openssl")
    assert choice == ("pycryptodome", "pycryptodome")
    (warning,) = caught
    assert warning.category is RuntimeWarning
    assert str(warning.message) == (
        "EFT_AES_BACKEND=openssl, but the cryptography package is missing; using PyCryptodome"
    )
    assert warning.filename != engines.__file__  # the caller's line, not engines.py's


def test_an_unknown_setting_warns_and_is_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "_HAVE_OPENSSL", True)
    choice, caught = _choice(" Rot13 ")
    assert choice == ("openssl", "openssl")
    (warning,) = caught
    assert warning.category is RuntimeWarning
    assert str(warning.message) == (
        "EFT_AES_BACKEND='rot13' is not auto, pycryptodome or openssl; using auto"
    )
    assert warning.filename != engines.__file__


@pytest.mark.usefixtures("engines_kept")
def test_configure_sets_both_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "_HAVE_OPENSSL", True)
    engines.configure("pycryptodome")
    assert (engines.ENCRYPT_BACKEND, engines.DECRYPT_BACKEND) == ("pycryptodome", "pycryptodome")
    engines.configure("auto")
    assert (engines.ENCRYPT_BACKEND, engines.DECRYPT_BACKEND) == ("openssl", "openssl")


def test_the_backends_named() -> None:
    assert engines.BACKENDS == ("pycryptodome", "openssl")
    assert engines.openssl_available() is True  # the dev extra installs cryptography
