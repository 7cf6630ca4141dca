"""EFT-25: no key, passphrase or file content reaches the logs or the --json output,
even at the server's debug level."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.attacks.conftest import Attacks, expected
from tests.support.processes import ClientDir, ClientRun, ServerProcess

CONTENT = b"Quarterly figures: revenue 1.2M EUR, margin 17 %. Do not forward.\n"
PASSPHRASE = "correct horse battery staple 19"


def _save(run: ClientRun, path: Path) -> Path:
    """What the client printed: its --json events, then its stderr."""
    lines = [json.dumps(event) for event in run.events] + [run.stderr]
    path.write_text("\n".join(lines))
    return path


def test_no_key_passphrase_or_content_in_logs_at_debug_level(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    server = target("--log-level", "debug")
    secret = tmp_path / "figures.txt"
    secret.write_bytes(CONTENT)
    alice = victims("alice", server.address)
    secrets: list[str | Path] = ["--content", secret, "--text", PASSPHRASE]
    alice_args: tuple[str, ...] = ()
    if version == 4:
        passphrase = tmp_path / "passphrase"
        passphrase.write_text(PASSPHRASE + "\n")
        passphrase.chmod(0o600)
        alice_args = ("--passphrase-file", str(passphrase))
    first = alice.run([secret], *alice_args)
    again = alice.run([secret], *alice_args)  # a reconnect too
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    outputs = [_save(first, tmp_path / "alice-1.out"), _save(again, tmp_path / "alice-2.out")]

    # A second client, plain key; in version 3 it uses an impostor, whose AES key we
    # then know: the client's output must not show the key it was given either.
    if version == 3:
        impostor = attacks.start("impostor")
        bob = victims("bob", impostor.address)
        run = bob.run([secret])
        aes_keys = impostor.finish().result["aes_keys"]
        assert run.returncode == 0 and aes_keys, run.stderr
        for key in aes_keys:
            secrets += ["--secret", key]
    else:
        bob = victims("bob", server.address)
        run = bob.run([secret])
        assert run.returncode == 0, run.stderr
    outputs.append(_save(run, tmp_path / "bob.out"))

    key_files = ("me.info", "priv.key") if version == 3 else ("me4.info", "priv4.key")
    for client in (alice, bob):
        for name in key_files:
            secrets += ["--identity", client.path / name]
    secrets += ["--server-key", next(server.data_dir.rglob("server.key"))]
    logs = [server.current_log, *outputs]
    if version == 3:  # debug is in force (version 4 logs nothing more at debug)
        assert '"packet"' in server.current_log.read_text()

    scan: list[str | Path] = []
    for log in logs:
        scan += ["--scan", log]
    result = attacks.run("log-secrets", *scan, *secrets)
    assert result.succeeded is expected("EFT-25 secrets in logs", version), result.output

    # Positive control: the same needles are found where the secrets are.
    where = ["--scan", secret, "--scan", alice.path / key_files[0]]
    control = attacks.run("log-secrets", *where, *secrets)
    assert control.succeeded, control.output
    kinds = {entry["secret"] for entry in control.result["found"]}
    assert f"content of {secret.name}" in kinds
    assert f"{key_files[0]} key" in kinds
