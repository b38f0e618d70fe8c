"""Node key files: the node's Ed25519 seed on disk, private from birth.

Why this exists: the node key is the node's libp2p identity and, on a
validator, the key whose votes make certificates. Losing it to another local
user, or to a backup that copied a world-readable file, lets someone vote in
the node's name. So the file is created with mode 0600 in the same system
call that creates it (never ``chmod`` after, which leaves a window), is never
overwritten, is refused when group or others can read it (as ssh refuses a
loose private key), and can be encrypted under a passphrase. No message or
``repr`` produced here contains key material, and nothing here logs.

Format (binary, version 1; all sizes in bytes)::

    magic "mycelkey" (8) | version 1 (1) | kind (1) | public key (32) | ...

    kind 0, plain:      ... | seed (32)                                    = 74
    kind 1, encrypted:  ... | log2(n) (1) | r (1) | p (1) | salt (16)
                            | nonce (12) | ChaCha20-Poly1305(seed) (48)   = 125

The public key sits in the clear so that a tool can show the node's identity
without the passphrase; a plain file's seed is checked against it on read,
which catches a corrupted file instead of silently yielding another key. When
encrypted, a 32-byte key is derived from the passphrase with scrypt
(n = 2**15, r = 8, p = 1 — 32 MiB, fine on a Raspberry Pi — and a random
16-byte salt), and the seed is sealed with ChaCha20-Poly1305 under a random
12-byte nonce with the whole header as associated data, so changing any
header byte (public key, KDF parameters, salt) fails authentication like a
wrong passphrase does. The KDF parameters are stored so a later version can
raise them and still read old files; on read they are bounded so a crafted
file cannot make the node allocate gigabytes.

Durability: the file and its folder are fsynced before :func:`write_key`
returns. A power cut during the write can leave a short file, which
:func:`read_key` reports as truncated rather than misreading.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from mycelia.protocol.keys import PUBLIC_KEY_SIZE, SEED_SIZE, SigningKey, did_encode

__all__ = [
    "KeyFileError",
    "KeyInfo",
    "key_info",
    "read_key",
    "read_passphrase_file",
    "read_private",
    "write_key",
]

MAGIC = b"mycelkey"
VERSION = 1
KIND_PLAIN = 0
KIND_ENCRYPTED = 1

SCRYPT_LOG2_N = 15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16

_PREFIX_SIZE = len(MAGIC) + 2 + PUBLIC_KEY_SIZE
_PLAIN_SIZE = _PREFIX_SIZE + SEED_SIZE
_ENC_HEADER_SIZE = _PREFIX_SIZE + 3 + SALT_SIZE + NONCE_SIZE
_ENC_SIZE = _ENC_HEADER_SIZE + SEED_SIZE + TAG_SIZE
# Anything larger is not a key file; read at most this much.
_MAX_FILE = 4096
# scrypt memory is 128 * r * n bytes; refuse parameters above 256 MiB.
_MAX_SCRYPT_MEMORY = 256 * 1024 * 1024


class KeyFileError(Exception):
    """A key file problem, with a message fit for an operator. Never carries
    key material or a passphrase."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a key file says without being decrypted."""

    public: bytes
    encrypted: bool

    @property
    def did(self) -> str:
        return did_encode(self.public)


def _derive(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=r, p=p).derive(passphrase)


def _encode(key: SigningKey, passphrase: bytes | None) -> bytes:
    if passphrase is None:
        return MAGIC + bytes([VERSION, KIND_PLAIN]) + key.public + key.seed
    salt = os.urandom(SALT_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    header = (
        MAGIC
        + bytes([VERSION, KIND_ENCRYPTED])
        + key.public
        + bytes([SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P])
        + salt
        + nonce
    )
    sealed = ChaCha20Poly1305(_derive(passphrase, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)).encrypt(
        nonce, key.seed, header
    )
    return header + sealed


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_passphrase(passphrase: bytes | None) -> None:
    if passphrase is not None and (type(passphrase) is not bytes or not passphrase):
        raise KeyFileError("the passphrase must be non-empty bytes")


def write_key(path: Path | str, key: SigningKey, passphrase: bytes | None = None) -> None:
    """Create ``path`` (mode 0600, must not exist) holding ``key``, encrypted
    under ``passphrase`` if one is given; fsync the file and its folder."""
    path = Path(path)
    _check_passphrase(passphrase)
    data = _encode(key, passphrase)
    try:
        # O_EXCL: never overwrite a key (a lost key cannot be recovered);
        # 0o600 at creation: the file is never readable by others, not even
        # for an instant.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a node key") from None
    except FileNotFoundError:
        raise KeyFileError(f"cannot create {path}: folder {path.parent} does not exist") from None
    except PermissionError:
        raise KeyFileError(f"cannot create {path}: permission denied") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)  # do not leave a half-written key behind
        raise
    os.close(fd)
    _fsync_dir(path.parent)


def read_private(path: Path, what: str) -> bytes:
    """Read a small secret file, refusing one that group or others can access."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise KeyFileError(f"{what} {path} is a directory") from None
    except PermissionError:
        raise KeyFileError(f"cannot read {what} {path}: permission denied") from None
    try:
        # fstat on the open file: the mode checked is the mode of what is read.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{what} {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if os.name == "posix" and mode & 0o077:
            how = "readable" if mode & 0o044 else "accessible"
            raise KeyFileError(f"{path} is {how} by others (mode {mode:04o}); chmod 600 it")
        chunks = []
        total = 0
        while total <= _MAX_FILE:
            chunk = os.read(fd, _MAX_FILE + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _parse_prefix(path: Path, data: bytes) -> tuple[int, bytes]:
    """Check magic and version; return (kind, public key)."""
    if len(data) < len(MAGIC) + 2:
        if MAGIC.startswith(data[: len(MAGIC)]):
            raise KeyFileError(f"{path} is truncated ({len(data)} bytes)")
        raise KeyFileError(f"{path} is not a mycelia node key file")
    if data[: len(MAGIC)] != MAGIC:
        raise KeyFileError(f"{path} is not a mycelia node key file")
    version, kind = data[len(MAGIC)], data[len(MAGIC) + 1]
    if version != VERSION:
        raise KeyFileError(
            f"{path} has key file format version {version}; this mycelia reads version {VERSION}"
        )
    expected = {KIND_PLAIN: _PLAIN_SIZE, KIND_ENCRYPTED: _ENC_SIZE}.get(kind)
    if expected is None:
        raise KeyFileError(f"{path} has an unknown key kind {kind}")
    if len(data) < expected:
        raise KeyFileError(
            f"{path} is truncated ({len(data)} bytes, a key file has {expected}); "
            "restore it from a backup"
        )
    if len(data) > expected:
        raise KeyFileError(f"{path} is corrupt ({len(data)} bytes, a key file has {expected})")
    return kind, data[len(MAGIC) + 2 : _PREFIX_SIZE]


def key_info(path: Path | str) -> KeyInfo:
    """The public key and whether the file is encrypted, without a passphrase."""
    path = Path(path)
    kind, public = _parse_prefix(path, read_private(path, "node key"))
    return KeyInfo(public=public, encrypted=kind == KIND_ENCRYPTED)


def read_key(path: Path | str, passphrase: bytes | None = None) -> SigningKey:
    """Read the node key at ``path``; ``passphrase`` is required for an
    encrypted file and refused for a plain one (a configured passphrase
    for an unencrypted key means the operator believes it is protected)."""
    path = Path(path)
    _check_passphrase(passphrase)
    data = read_private(path, "node key")
    kind, public = _parse_prefix(path, data)
    if kind == KIND_PLAIN:
        if passphrase is not None:
            raise KeyFileError(
                f"{path} is not encrypted but a passphrase was given; "
                "remove node.passphrase_file or create an encrypted key"
            )
        seed = data[_PREFIX_SIZE:]
    else:
        if passphrase is None:
            raise KeyFileError(
                f"{path} is encrypted; a passphrase is needed (set node.passphrase_file)"
            )
        log2_n, r, p = data[_PREFIX_SIZE : _PREFIX_SIZE + 3]
        if not (10 <= log2_n <= 24 and 1 <= r <= 32 and 1 <= p <= 16) or (
            128 * r * 2**log2_n > _MAX_SCRYPT_MEMORY
        ):
            raise KeyFileError(f"{path} has unsupported scrypt parameters (corrupt file?)")
        salt_at = _PREFIX_SIZE + 3
        salt = data[salt_at : salt_at + SALT_SIZE]
        nonce = data[salt_at + SALT_SIZE : _ENC_HEADER_SIZE]
        try:
            seed = ChaCha20Poly1305(_derive(passphrase, salt, log2_n, r, p)).decrypt(
                nonce, data[_ENC_HEADER_SIZE:], data[:_ENC_HEADER_SIZE]
            )
        except InvalidTag:
            raise KeyFileError(
                f"cannot decrypt {path}: wrong passphrase, or the file was altered"
            ) from None
    try:
        key = SigningKey(seed)
    except ValueError:
        raise KeyFileError(f"{path} is corrupt") from None
    if key.public != public:
        raise KeyFileError(f"{path} is corrupt: its key does not match its public key")
    return key


def read_passphrase_file(path: Path | str) -> bytes:
    """The passphrase in ``path``: its bytes without one trailing newline.

    The file must be private (like the key it unlocks) and non-empty.
    """
    path = Path(path)
    data = read_private(path, "passphrase file")
    if len(data) > _MAX_FILE:
        raise KeyFileError(f"passphrase file {path} is too large (over {_MAX_FILE} bytes)")
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise KeyFileError(f"passphrase file {path} is empty")
    return data
