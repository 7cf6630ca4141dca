"""EFT-20: an impersonated server hands out its own AES key, reads every file, and the
client reports each one verified."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eft_client.errors import ExitCode
from tests.attacks.conftest import Attacks, expected, fingerprint_of, stored
from tests.support.processes import ClientDir, ServerProcess

SECRETS = {"payroll.csv": b"name,salary\nalice,91000\n", "notes.txt": b"door code 4711\n"}


def _files(tmp_path: Path) -> list[Path]:
    """The secrets, in a directory whose name the server must not learn."""
    folder = tmp_path / "home-of-carol" / "private"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in SECRETS.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def test_an_impostor_reads_every_file_of_a_new_client_which_reports_them_verified(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    """No real server in the path: the impostor alone (v4: its key, not the server's)."""
    server = target()
    loot = tmp_path / "loot"
    if version == 3:
        impostor = attacks.start("impostor", "--out", loot)
        extra: tuple[str, ...] = ()
    else:
        impostor = attacks.start("impostor", "--out", loot, "--target", server.address)
        extra = ("--server-fingerprint", fingerprint_of(server))  # distributed out of band
    victim = victims("carol", impostor.address)
    run = victim.run(_files(tmp_path), *extra)
    result = impostor.finish()

    assert result.succeeded is expected("EFT-20 impostor reads every file", version)
    if version == 3:
        assert run.returncode == 0, run.stderr
        verified = {e["file"] for e in run.events if e["event"] == "file_verified"}
        assert verified == set(SECRETS)  # what the user is told
        for name, data in SECRETS.items():
            assert (loot / name).read_bytes() == data  # what the impostor has
        # What a server learns of the client's disk: base names only, no directory.
        assert {f["file_name"] for f in result.result["files"]} == set(SECRETS)
        assert "home-of-carol" not in result.output
        # The real server never saw the client: "verified" was the impostor's word.
        assert not any(server.data_dir.rglob("payroll.csv"))
    else:
        assert run.returncode == ExitCode.SERVER_IDENTITY, run.stderr
        assert result.result["message_3"] == 0 and result.result["files"] == []
        assert not loot.exists()
        assert not (victim.path / "me4.info").exists()  # nothing of it was sent or kept


def test_an_impostor_reads_the_files_of_a_registered_client_after_a_forged_1606(
    version: int,
    target: Callable[..., ServerProcess],
    attacks: Attacks,
    victims: Callable[..., ClientDir],
    tmp_path: Path,
) -> None:
    """A client registered earlier sends 827, whose answer needs its public key: the
    impostor answers 1606 instead, hoping the client registers again (EFT-19) and hands
    it a key. Our clients no longer obey an unasked 1606 (docs/IDENTITY.md): [v3] the
    client stops with exit 9, keeps its identity and sends no file; only a user who
    asks for --re-register walks into the impostor, which then reads every file (the
    protocol's weakness is still there)."""
    server = target()
    victim = victims("dave", server.address)
    warmup = tmp_path / "warmup.txt"
    warmup.write_bytes(b"first contact, clean\n")
    assert victim.run([warmup]).returncode == 0
    old_id = victim.client_id_hex
    loot = tmp_path / "loot"
    if version == 3:
        impostor = attacks.start("impostor", "--out", loot)
    else:
        impostor = attacks.start("impostor", "--out", loot, "--target", server.address)
    victim.server = impostor.address
    extra = () if version == 3 else ("--server-fingerprint", fingerprint_of(server))
    run = victim.run(_files(tmp_path), *extra)
    result = impostor.finish()

    if version == 3:
        # The client kept its identity: the impostor got a 827 it could not answer.
        assert not result.succeeded
        assert run.returncode == ExitCode.IDENTITY, run.stderr
        assert result.result["reconnect_denied"] == [old_id]
        assert "registered" not in run.kinds()
        assert not loot.exists() or not any(loot.iterdir())
        assert victim.client_id_hex == old_id
        # The user who chooses to register again hands the impostor every file.
        impostor = attacks.start("impostor", "--out", loot)
        victim.server = impostor.address
        chosen = victim.run(_files(tmp_path), "--re-register")
        result = impostor.finish()
        assert result.succeeded is expected("EFT-20 impostor reads every file", version)
        assert chosen.returncode == 0, chosen.stderr
        for name, data in SECRETS.items():
            assert (loot / name).read_bytes() == data
        assert victim.client_id_hex == result.result["client_id"]
    else:
        assert result.succeeded is expected("EFT-20 impostor reads every file", version)
        assert run.returncode == ExitCode.SERVER_IDENTITY, run.stderr
        assert result.result["message_3"] == 0
        victim.server = server.address
        again = victim.run([tmp_path / "home-of-carol" / "private" / "notes.txt"])
        assert again.returncode == 0 and "reconnected" in again.kinds()
        assert (
            stored(server, 4, victim.client_id_hex, "notes.txt").read_bytes()
            == (SECRETS["notes.txt"])
        )
