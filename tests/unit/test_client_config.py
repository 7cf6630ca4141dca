"""The client's local files (spec section 7): transfer.info, me.info and priv.key."""

from __future__ import annotations

import base64
import random
import stat
from pathlib import Path

import pytest
from Crypto.PublicKey import RSA

from eft_client.config import (
    ME_INFO,
    PRIV_KEY,
    ClientPaths,
    TransferInfo,
    locate,
    read_transfer_info,
    server_directory_name,
)
from eft_client.errors import ConfigError
from eft_client.identity import read_identity, write_identity
from eft_protocol import crypto
from eft_protocol.client_session import Identity

CLIENT_ID = bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.fixture(scope="module")
def key() -> RSA.RsaKey:
    return crypto.generate_rsa_key(random.Random(21).randbytes)


@pytest.fixture(scope="module")
def identity(key: RSA.RsaKey) -> Identity:
    return Identity("alice", CLIENT_ID, key)


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("ascii"))  # bytes: keep \r and NULs exactly as given
    return path


# --- transfer.info --------------------------------------------------------------


def test_transfer_info_with_host_and_port(tmp_path: Path) -> None:
    path = write(tmp_path / "transfer.info", "127.0.0.1:1256\nalice\n/tmp/file.bin\n")
    assert read_transfer_info(path) == TransferInfo(
        "127.0.0.1", 1256, "alice", Path("/tmp/file.bin")
    )


def test_transfer_info_with_a_host_name(tmp_path: Path) -> None:
    path = write(tmp_path / "transfer.info", "eft.example.org:65535\nbob\nfile.txt")
    info = read_transfer_info(path)
    assert (info.host, info.port, info.name, info.file) == (
        "eft.example.org",
        65535,
        "bob",
        Path("file.txt"),
    )


def test_transfer_info_with_an_ipv6_address(tmp_path: Path) -> None:
    path = write(tmp_path / "transfer.info", "[::1]:8080\ncarol\nf\n")
    info = read_transfer_info(path)
    assert info.host == "::1"
    assert info.port == 8080


@pytest.mark.parametrize(
    "name_line",
    ["alice\x00\x00\x00\x00", "alice   ", "alice\r", "alice\x00 \r", "alice\t"],
    ids=["nuls", "spaces", "cr", "mixed", "tab"],
)
def test_transfer_info_strips_padding_from_the_name(tmp_path: Path, name_line: str) -> None:
    path = write(tmp_path / "transfer.info", f"127.0.0.1:1256\r\n{name_line}\nfile.bin\r\n")
    info = read_transfer_info(path)
    assert info.name == "alice"
    assert info.port == 1256
    assert info.file == Path("file.bin")


def test_transfer_info_crlf_everywhere(tmp_path: Path) -> None:
    path = write(tmp_path / "transfer.info", "10.0.0.1:9\r\nd a v e\r\nC:\\f.txt\r\n")
    assert read_transfer_info(path) == TransferInfo("10.0.0.1", 9, "d a v e", Path("C:\\f.txt"))


def test_a_name_of_100_characters_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "transfer.info", "h:1\n" + "n" * 100 + "\nf\n")
    assert read_transfer_info(path).name == "n" * 100


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1:abc",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:",
        "127.0.0.1",
        ":1256",
        "host:-1",
        "[::1]",
    ],
)
def test_a_bad_address_is_a_config_error(tmp_path: Path, address: str) -> None:
    path = write(tmp_path / "transfer.info", f"{address}\nalice\nfile\n")
    with pytest.raises(ConfigError, match="line 1"):
        read_transfer_info(path)


@pytest.mark.parametrize("name", ["n" * 101, "x" * 255, "tab\there", "caf\x7f"])
def test_a_bad_name_is_a_config_error(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "transfer.info", f"127.0.0.1:1256\n{name}\nfile\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_transfer_info(path)


def test_a_non_ascii_transfer_info_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "transfer.info"
    path.write_bytes("127.0.0.1:1256\nzoë\nfile\n".encode())
    with pytest.raises(ConfigError):
        read_transfer_info(path)


def test_a_missing_transfer_info_is_empty(tmp_path: Path) -> None:
    assert read_transfer_info(tmp_path / "transfer.info") == TransferInfo()
    assert read_transfer_info(tmp_path / "transfer.info") == TransferInfo(None, None, None, None)


def test_a_partial_transfer_info_leaves_the_rest_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "transfer.info", "127.0.0.1:1256\n")
    assert read_transfer_info(path) == TransferInfo("127.0.0.1", 1256, None, None)


# --- me.info and priv.key ---------------------------------------------------------


def test_identity_round_trip(tmp_path: Path, identity: Identity) -> None:
    write_identity(tmp_path, identity)
    loaded = read_identity(tmp_path / ME_INFO)
    assert loaded == identity
    assert loaded is not None and loaded.private_key.has_private()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ME_INFO, PRIV_KEY])


def test_identity_files_are_private(tmp_path: Path, identity: Identity) -> None:
    write_identity(tmp_path, identity)
    for name in (ME_INFO, PRIV_KEY):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_me_info_layout(tmp_path: Path, identity: Identity) -> None:
    write_identity(tmp_path, identity)
    text = (tmp_path / ME_INFO).read_text(encoding="ascii")
    lines = text.splitlines()
    assert lines[0] == "alice"
    assert lines[1] == CLIENT_ID.hex() == "00112233445566778899aabbccddeeff"
    key_lines = lines[2:]
    assert len(key_lines) > 5  # ~850 Base64 characters for an RSA-1024 PKCS#8 key
    assert all(len(line) == 72 for line in key_lines[:-1])
    assert 0 < len(key_lines[-1]) <= 72
    assert "".join(key_lines) == crypto.export_private_key(identity.private_key)
    assert text.endswith("\n")
    # priv.key holds the same Base64 key, wrapped the same way.
    assert (tmp_path / PRIV_KEY).read_text(encoding="ascii").splitlines() == key_lines
    der = base64.b64decode("".join(key_lines))
    assert RSA.import_key(der) == identity.private_key


def test_write_identity_sets_an_existing_one_aside_never_overwrites_it(
    tmp_path: Path, identity: Identity, key: RSA.RsaKey
) -> None:
    write_identity(tmp_path, identity)
    before = (tmp_path / ME_INFO).read_bytes()
    assert write_identity(tmp_path, identity) == []  # the same id: rewritten in place
    newer = Identity(
        "alice2", bytes(range(16)), crypto.generate_rsa_key(random.Random(22).randbytes)
    )
    moved = write_identity(tmp_path, newer)
    assert read_identity(tmp_path / ME_INFO) == newer
    assert [p.name.split(".replaced-")[0] for p in moved] == [ME_INFO, PRIV_KEY]
    assert moved[0].read_bytes() == before  # docs/IDENTITY.md: kept, the user decides
    assert len(list(tmp_path.iterdir())) == 4


def me_info_text(name: str, id_text: str, key: RSA.RsaKey, width: int | None = 72) -> str:
    key_text = crypto.export_private_key(key)
    if width:
        key_text = "\n".join(key_text[i : i + width] for i in range(0, len(key_text), width))
    return f"{name}\n{id_text}\n{key_text}\n"


def test_a_key_on_one_line_loads(tmp_path: Path, key: RSA.RsaKey) -> None:
    path = write(tmp_path / ME_INFO, me_info_text("alice", CLIENT_ID.hex(), key, width=None))
    assert len(path.read_text().splitlines()) == 3
    assert read_identity(path) == Identity("alice", CLIENT_ID, key)


@pytest.mark.parametrize("width", [64, 76])
def test_a_key_wrapped_at_another_width_loads(tmp_path: Path, key: RSA.RsaKey, width: int) -> None:
    path = write(tmp_path / ME_INFO, me_info_text("alice", CLIENT_ID.hex(), key, width=width))
    assert read_identity(path) == Identity("alice", CLIENT_ID, key)


def test_an_uppercase_hex_id_is_accepted(tmp_path: Path, key: RSA.RsaKey) -> None:
    path = write(tmp_path / ME_INFO, me_info_text("alice", CLIENT_ID.hex().upper(), key))
    loaded = read_identity(path)
    assert loaded is not None
    assert loaded.client_id == CLIENT_ID


def test_me_info_with_crlf_and_a_nul_padded_name_loads(tmp_path: Path, key: RSA.RsaKey) -> None:
    text = me_info_text("alice\x00\x00\x00", CLIENT_ID.hex() + " ", key).replace("\n", "\r\n")
    path = write(tmp_path / ME_INFO, text)
    assert read_identity(path) == Identity("alice", CLIENT_ID, key)


def test_a_missing_me_info_is_none(tmp_path: Path) -> None:
    assert read_identity(tmp_path / ME_INFO) is None


@pytest.mark.parametrize(
    "id_text",
    [
        "",
        "xyz",
        CLIENT_ID.hex()[:-1],
        CLIENT_ID.hex()[:-2],
        CLIENT_ID.hex() + "00",
        "0x" + CLIENT_ID.hex()[2:],
        "g" * 32,
        "00112233-4455-6677-8899-aabbccddeeff",
    ],
)
def test_a_bad_client_id_is_a_clear_config_error(
    tmp_path: Path, key: RSA.RsaKey, id_text: str
) -> None:
    path = write(tmp_path / ME_INFO, me_info_text("alice", id_text, key))
    with pytest.raises(ConfigError, match="client id") as info:
        read_identity(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "key_text",
    ["not a key!", "aGVsbG8gd29ybGQ=", "AAAA\nBBBB\nCCCC", "@@@@"],
    ids=["junk", "base64-not-a-key", "short-lines", "bad-chars"],
)
def test_a_garbage_key_is_a_clear_config_error(tmp_path: Path, key_text: str) -> None:
    path = write(tmp_path / ME_INFO, f"alice\n{CLIENT_ID.hex()}\n{key_text}\n")
    with pytest.raises(ConfigError, match="private key") as info:
        read_identity(path)
    assert str(path) in str(info.value)


def test_a_public_key_in_me_info_is_a_clear_config_error(tmp_path: Path, key: RSA.RsaKey) -> None:
    public = base64.b64encode(crypto.public_key_der(key)).decode()
    path = write(tmp_path / ME_INFO, f"alice\n{CLIENT_ID.hex()}\n{public}\n")
    with pytest.raises(ConfigError, match="public key"):
        read_identity(path)


@pytest.mark.parametrize("text", ["", "alice\n", f"alice\n{CLIENT_ID.hex()}\n"])
def test_a_short_me_info_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / ME_INFO, text)
    with pytest.raises(ConfigError, match="register anew"):
        read_identity(path)


def test_a_bad_name_in_me_info_is_a_config_error(tmp_path: Path, key: RSA.RsaKey) -> None:
    path = write(tmp_path / ME_INFO, me_info_text("n" * 101, CLIENT_ID.hex(), key))
    with pytest.raises(ConfigError, match="user name"):
        read_identity(path)


# --- where the files live (docs/IDENTITY.md) -----------------------------------------


def test_without_a_directory_the_files_are_per_user_and_the_identity_per_server(
    tmp_path: Path,
) -> None:
    environ = {"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path / "state")}
    paths = locate(None, tmp_path / "work", "::1", 1256, environ)
    config = tmp_path / "home" / ".config" / "eft"
    assert paths.identity_dir == paths.identity_v4_dir == config / "servers" / "__1_1256"
    assert paths.known_servers == config / "known_servers"
    assert paths.uploads == tmp_path / "state" / "eft" / "uploads.json"


def test_a_relative_xdg_value_is_ignored(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": "relative"}
    paths = locate(None, tmp_path / "work", "h", 1, environ)
    assert paths.identity_dir == tmp_path / ".config" / "eft" / "servers" / "h_1"


@pytest.mark.parametrize("seed_file", ["transfer.info", "me.info", "me4.info"])
def test_a_working_directory_with_the_seeds_files_holds_everything(
    tmp_path: Path, seed_file: str
) -> None:
    (tmp_path / seed_file).write_text("x\n")
    paths = locate(None, tmp_path, "h", 1, {"HOME": str(tmp_path / "home")})
    assert paths == ClientPaths.in_one_directory(tmp_path)
    assert locate(tmp_path / "given", tmp_path, "h", 1, {}) == ClientPaths.in_one_directory(
        tmp_path / "given"
    )


def test_server_directory_names_are_file_names_everywhere() -> None:
    assert server_directory_name("127.0.0.1", 1256) == "127.0.0.1_1256"
    assert server_directory_name("a/b:c", 1) == "a_b_c_1"
