"""Node key files: private from creation, never overwritten, tamper-evident."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mycelia.client import keyfile
from mycelia.client.keyfile import (
    KeyFileError,
    key_info,
    read_key,
    read_passphrase_file,
    write_key,
)
from mycelia.protocol.keys import SigningKey

SEED = bytes(range(1, 33))
PASS = b"correct horse battery staple"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey(SEED)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def assert_no_secret(text: str) -> None:
    for form in (SEED.hex(), repr(SEED), SEED.decode("latin-1"), PASS.decode(), "correct horse"):
        assert form not in text


def refused(path: Path, passphrase: bytes | None = None) -> str:
    with pytest.raises(KeyFileError) as exc:
        read_key(path, passphrase)
    msg = str(exc.value)
    assert_no_secret(msg)
    assert_no_secret(repr(exc.value))
    return msg


def test_plain_round_trip_and_mode_0600_from_creation(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    old = os.umask(0)  # even with a permissive umask the file is born 0600
    try:
        write_key(path, key)
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert path.stat().st_size == 74
    back = read_key(path)
    assert back.seed == SEED
    assert back.public == key.public
    info = key_info(path)
    assert info.public == key.public
    assert not info.encrypted
    assert info.did == key.did


def test_write_creates_with_o_excl_and_0600(
    tmp_path: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append((flags, mode))
        return real_open(path, flags, mode, *a, **kw)

    monkeypatch.setattr(keyfile.os, "open", spy)
    chmods = []
    monkeypatch.setattr(keyfile.os, "chmod", lambda *a, **kw: chmods.append(a), raising=False)
    write_key(tmp_path / "node.key", key)
    flags, created_mode = calls[0]
    assert flags & os.O_CREAT
    assert flags & os.O_EXCL
    assert flags & os.O_WRONLY
    assert created_mode == 0o600
    assert chmods == []


def test_encrypted_round_trip(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_key(path, key, PASS)
    assert mode(path) == 0o600
    data = path.read_bytes()
    assert SEED not in data
    assert data.startswith(b"mycelkey\x01\x01")
    assert read_key(path, PASS).seed == SEED
    info = key_info(path)
    assert info.encrypted
    assert info.public == key.public


def test_two_encryptions_differ(tmp_path: Path, key: SigningKey) -> None:
    write_key(tmp_path / "a", key, PASS)
    write_key(tmp_path / "b", key, PASS)
    assert (tmp_path / "a").read_bytes() != (tmp_path / "b").read_bytes()  # fresh salt and nonce


def test_wrong_passphrase_refused(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_key(path, key, PASS)
    msg = refused(path, b"wrong")
    assert "wrong passphrase" in msg


@pytest.mark.parametrize("offset", [-1, -20, -48, 10, 42, 46, 60, 72])
def test_tampered_file_refused(tmp_path: Path, key: SigningKey, offset: int) -> None:
    # Flip one bit in the ciphertext, the tag, the public key, the KDF
    # parameters, the salt or the nonce: authentication fails every time.
    path = tmp_path / "node.key"
    write_key(path, key, PASS)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    msg = refused(path, PASS)
    assert "wrong passphrase, or the file was altered" in msg or "scrypt" in msg


def test_corrupted_plain_file_refused(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_key(path, key)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    assert "is corrupt" in refused(path)


def test_missing_passphrase_refused(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_key(path, key, PASS)
    msg = refused(path)
    assert "is encrypted; a passphrase is needed" in msg


def test_passphrase_for_plain_key_refused(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_key(path, key)
    assert "is not encrypted but a passphrase was given" in refused(path, PASS)


def test_missing_file(tmp_path: Path) -> None:
    msg = refused(tmp_path / "node.key")
    assert "not found" in msg
    assert "node.key" in msg


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o620])
def test_group_or_world_accessible_file_refused(
    tmp_path: Path, key: SigningKey, bad_mode: int
) -> None:
    path = tmp_path / "node.key"
    write_key(path, key)
    path.chmod(bad_mode)
    msg = refused(path)
    assert f"(mode {bad_mode:04o}); chmod 600 it" in msg
    if bad_mode & 0o044:
        assert "node.key is readable by others" in msg


def test_refuse_overwrite(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_key(path, key)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        write_key(path, SigningKey.generate())
    assert path.read_bytes() == before


def test_write_into_missing_folder(tmp_path: Path, key: SigningKey) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        write_key(tmp_path / "nope" / "node.key", key)


@pytest.mark.parametrize("size", [0, 5, 9, 40, 73])
def test_truncated_plain_file(tmp_path: Path, key: SigningKey, size: int) -> None:
    path = tmp_path / "node.key"
    write_key(path, key)
    data = path.read_bytes()
    path.write_bytes(data[:size])
    assert "is truncated" in refused(path)


def test_truncated_encrypted_file(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_key(path, key, PASS)
    path.write_bytes(path.read_bytes()[:-1])
    assert "is truncated" in refused(path, PASS)


def test_not_a_key_file_and_unknown_version(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    os.close(fd)
    assert "not a mycelia node key file" in refused(path)
    path.write_bytes(b"mycelkey\x09\x00" + bytes(64))
    assert "format version 9" in refused(path)


def test_empty_passphrase_refused_on_write(tmp_path: Path, key: SigningKey) -> None:
    with pytest.raises(KeyFileError, match="non-empty"):
        write_key(tmp_path / "node.key", key, b"")
    assert not (tmp_path / "node.key").exists()


def test_seed_never_in_repr(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    write_key(path, key, PASS)
    back = read_key(path, PASS)
    assert back.seed == SEED  # the right key came back ...
    assert_no_secret(repr(back))  # ... and its repr shows none of it
    assert_no_secret(str(back))
    assert_no_secret(repr(key_info(path)))


def test_passphrase_file(tmp_path: Path) -> None:
    p = tmp_path / "pass"
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, PASS + b"\n")
    os.close(fd)
    assert read_passphrase_file(p) == PASS
    p.write_bytes(PASS + b"\r\n")
    assert read_passphrase_file(p) == PASS
    p.write_bytes(b"\n")
    with pytest.raises(KeyFileError, match="is empty"):
        read_passphrase_file(p)
    p.write_bytes(PASS)
    p.chmod(0o644)
    with pytest.raises(KeyFileError) as exc:
        read_passphrase_file(p)
    assert "readable by others" in str(exc.value)
    assert_no_secret(str(exc.value))
    with pytest.raises(KeyFileError, match="not found"):
        read_passphrase_file(tmp_path / "nope")
