"""Which engine runs the bulk AES: PyCryptodome or OpenSSL.

Apart from ``crypto.py`` so that version 4's records can ask without loading version
3's RSA and OAEP. ``auto`` (the default) is OpenSSL both ways when the ``cryptography``
package is installed, else PyCryptodome; ``pycryptodome`` and ``openssl`` force one.
Every choice produces the same bytes (tests/protocol/test_crypto_backends.py,
tests/v4/test_record_engines.py).

The core reads no environment: a driver passes the user's setting (``EFT_AES_BACKEND``)
to ``configure`` before it encrypts anything; until then the choice is ``auto``.
"""

from __future__ import annotations

import importlib.util
import warnings

BACKENDS = ("pycryptodome", "openssl")

# Only looked for here: the package is imported when an engine is made, so a process
# that never encrypts or decrypts a file does not pay for loading it.
_HAVE_OPENSSL = importlib.util.find_spec("cryptography") is not None


def openssl_available() -> bool:
    """True when the ``cryptography`` package (OpenSSL) is installed."""
    return _HAVE_OPENSSL


def backend_choice(setting: str) -> tuple[str, str]:
    """(encrypting engine, decrypting engine) for a setting of ``EFT_AES_BACKEND``."""
    wanted = setting.strip().lower() or "auto"
    if wanted == "pycryptodome" or (wanted != "openssl" and not openssl_available()):
        return "pycryptodome", "pycryptodome"
    if wanted == "openssl":
        if openssl_available():
            return "openssl", "openssl"
        warnings.warn(
            "EFT_AES_BACKEND=openssl, but the cryptography package is missing; using PyCryptodome",
            RuntimeWarning,
            stacklevel=2,
        )
        return "pycryptodome", "pycryptodome"
    if wanted != "auto":
        warnings.warn(
            f"EFT_AES_BACKEND={wanted!r} is not auto, pycryptodome or openssl; using auto",
            RuntimeWarning,
            stacklevel=2,
        )
    return "openssl", "openssl"


ENCRYPT_BACKEND, DECRYPT_BACKEND = backend_choice("auto")


def configure(setting: str) -> None:
    """Pick the engines for this process (a driver calls it once, at start-up)."""
    global ENCRYPT_BACKEND, DECRYPT_BACKEND
    ENCRYPT_BACKEND, DECRYPT_BACKEND = backend_choice(setting)
