"""What a version-4 client run imports before it connects (issue 22, docs/PERFORMANCE.md
"The client's start-up"). Every module imported is start-up each ``eft-client`` run pays;
these imports were cut and must not come back unnoticed:

- PyCryptodome's C bindings (``Crypto.Util._raw_api``, and through cffi, pycparser
  parsing C declarations): a v4 run on OpenSSL with a key in plaintext needs none of
  PyCryptodome's ciphers, so ChaCha20-Poly1305 and scrypt (a sealed key) and AES (records
  on PyCryptodome) are imported where they are used;
- version 3's stack: RSA, its wire messages (``eft_protocol.wire``, one class per
  message) and its session;
- ``tempfile`` (with shutil, bz2, lzma): only a run that saves an identity needs it.

Checked in a child interpreter (this process has imported everything already) by the
names in ``sys.modules``, not by timing. The second test is the control: the same probe
sees those modules once the code that needs them runs, so the names are the right ones.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from eft_protocol import engines

#: Imports the client's command line and the version-4 transfer as ``eft-client`` does,
#: then does what a v4 run does before it connects: reads (here: first writes) a
#: plaintext identity and makes record ciphers on the default engine.
_V4_RUN = """
import json, sys
from pathlib import Path
tmp = Path(sys.argv[1])
import eft_client.cli, eft_client.transfer_v4
from eft_client.identity_v4 import IdentityV4, read_identity_v4, write_identity_v4
from eft_protocol.noise import KeyPair
from eft_protocol.v4.records import RecordCipher
write_identity_v4(tmp, IdentityV4("ann", KeyPair.generate()), None)
if sys.argv[2] == "sealed":
    write_identity_v4(tmp, IdentityV4("ann", KeyPair.generate()), b"pass")
    assert read_identity_v4(tmp, b"pass") is not None
    RecordCipher(bytes(32), "pycryptodome").seal(b"h", b"p")
else:
    assert read_identity_v4(tmp, None) is not None
    RecordCipher(bytes(32)).seal(b"h", b"p")
print(json.dumps(sorted(sys.modules)))
"""

#: Never loaded by a v4 run with a plaintext key on OpenSSL (the default engine).
NOT_ON_THE_V4_PATH = (
    "Crypto.PublicKey.RSA",
    "Crypto.Cipher.PKCS1_OAEP",
    "Crypto.Cipher.AES",
    "Crypto.Cipher.ChaCha20_Poly1305",
    "Crypto.Protocol.KDF",
    "Crypto.Util._raw_api",
    "pycparser",
    "eft_protocol.wire",
    "eft_protocol.crypto",
    "eft_protocol.client_session",
    "eft_client.transfer",
    "eft_client.identity",
)


def _modules_after(*args: str) -> set[str]:
    """``sys.modules`` of a child interpreter that ran ``python -c`` with ``args``."""
    done = subprocess.run(
        [sys.executable, "-c", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


@pytest.mark.skipif(
    not engines.openssl_available(), reason="without OpenSSL the records run on PyCryptodome"
)
def test_a_version_4_run_does_not_import_version_3_or_pycryptodome_ciphers(
    tmp_path: object,
) -> None:
    modules = _modules_after(_V4_RUN, str(tmp_path), "plain")
    assert {"eft_client.transfer_v4", "eft_protocol.v4.records"} <= modules
    assert sorted(modules.intersection(NOT_ON_THE_V4_PATH)) == []


def test_the_client_modules_alone_do_not_import_tempfile() -> None:
    """A run that only reads its identity writes no file through tempfile (saving one,
    as the test above does, loads it)."""
    modules = _modules_after(
        "import json, sys; import eft_client.cli, eft_client.transfer_v4; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    assert "eft_client.transfer_v4" in modules
    assert "tempfile" not in modules


def test_the_probe_sees_them_when_a_sealed_key_or_pycryptodome_records_need_them(
    tmp_path: object,
) -> None:
    modules = _modules_after(_V4_RUN, str(tmp_path), "sealed")
    needed = {"Crypto.Cipher.AES", "Crypto.Cipher.ChaCha20_Poly1305", "Crypto.Protocol.KDF"}
    assert needed <= modules
    assert "Crypto.Util._raw_api" in modules
