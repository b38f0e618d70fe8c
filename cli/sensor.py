"""``mycelia sensor``: device keys, registration, readings, claims and audits.

Why this exists: an impact economy turns what sensors measured into credits
(``docs/sensors.md``). Each party needs its part as one command: the device
maker a key and the exact bytes a device sends (``keygen``, ``push``,
``simulate``), the owner the registration and the claims (``register``,
``claim``), anyone the proof that a credit rests on readings a registered
device signed (``audit``).

How it works:

* Device keys live beside the wallets: ``$MYCELIA_DEVICE_DIR``, else the
  ``devices/`` sibling of the wallet folder (``cli/wallet.py``), one file
  ``<NAME>.device`` per device, created 0600 (never overwritten) in a folder
  created 0700, and refused when others can read it — as the node key file
  (``client/keyfile.py``, whose private-file reader is used). The format,
  ``mycelia-device-key/1`` (docs/sensors.md, "Device key files"), is one
  UTF-8 JSON object: ``format``, ``key_type`` (``ed25519`` / ``p256``),
  ``secret`` (the Ed25519 seed or the P-256 scalar, 32 bytes big-endian),
  ``public_key`` (32 bytes, or 33 SEC1 compressed) and ``device`` (its id),
  bytes as ``0x`` + lowercase hex; ``secret`` is absent for a device
  imported by its public key. Reading one checks it all (a valid key, the
  id it implies, the secret's public key). A firmware writer can read the
  secret out of it to flash a test device.
* ``import`` adds a device whose key was made elsewhere (a maker's
  factory, a secure element): from its public key (hex; P-256 also as the
  uncompressed point or the bare ``X ‖ Y`` an ATECC608 reports), or from a
  key file — a ``mycelia-device-key/1`` file, or an unencrypted PEM or DER
  key (private: PKCS#8 or SEC1; public: SubjectPublicKeyInfo), read with
  ``cryptography``; a file holding a private key must not be readable by
  others. Without its private key a device is registered with the proof
  of possession the device itself signs (``register --pop-message`` prints
  the message and its SHA-256, ``--pop`` takes the signature, checked here
  first); ``push`` and ``simulate``, which sign as the device, refuse it
  with ``no_private_key``.
* ``<NAME>.counter`` beside it holds the device's next reading counter.
  A counter is reserved (written, fsynced, renamed into place, under a lock
  on the key file) *before* a reading with it is signed, so a counter is
  never used twice, even across crashes or concurrent commands; a reading
  that never arrived leaves a gap, which the protocol allows.
* Readings are built and signed here with the protocol's own types
  (``Reading``, ``SignedReading``) and posted with
  :class:`~mycelia.client.Ingest` to the host's ingest port as the
  canonical msgpack a device sends. Everything else goes through the wallet
  RPC with :class:`~mycelia.client.Client`: ``register`` and ``claim``
  sign entries with the owner's wallet key; ``claim`` builds the claim from
  certified attestations (``Client.prepare_claim``); ``audit`` verifies every
  relayed reading end to end (``Client.audit``).
* ``simulate`` plays virtual devices (:data:`MODELS`): a solar meter whose
  energy per reading follows a daylight curve, a thermometer following a
  daily cycle. ``--speed`` runs the simulated sun faster than the wall clock
  (the devnet shows credits within seconds); the readings' timestamps are
  always the wall clock, as the host checks them. ``--claim WALLET`` also
  claims the devices' certified attestations as they come (the devnet's
  background simulator does).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import random
import signal
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from rich.table import Table
from rich.text import Text

from mycelia.api.encoding import hex_out
from mycelia.cli.main import _Group, connect, json_option, rpc_options
from mycelia.cli.wallet import (
    economy_id,
    economy_option,
    fail,
    format_amount,
    key_name,
    load_wallet,
    print_json,
    short,
    stderr,
    stdout,
    submit_and_report,
    wait_options,
    wallet_dir,
)
from mycelia.client import (
    FAILED,
    UNATTESTED,
    VERIFIED,
    AuditReport,
    Client,
    ClientError,
    EconomyInfo,
    Endpoint,
    Ingest,
    IngestResult,
    ReadingCheck,
)
from mycelia.client.keyfile import KeyFileError, read_private
from mycelia.protocol import (
    ED25519,
    P256,
    DeviceKey,
    DeviceRegister,
    Ed25519DeviceKey,
    Metric,
    P256DeviceKey,
    Reading,
    Refused,
    SignedReading,
    SigningKey,
    check_device_key,
    device_id,
    did_decode,
    verify_device_signature,
)
from mycelia.protocol.domains import DEVICE
from mycelia.protocol.sensors import P256_N

__all__ = [
    "DEVICE_DIR_ENV",
    "MODELS",
    "DeviceFile",
    "Model",
    "Simulator",
    "Tally",
    "create_device",
    "device_dir",
    "device_path",
    "import_device",
    "load_device",
    "parse_metric",
    "read_device",
    "reserve_counters",
    "sensor",
]

DEVICE_DIR_ENV = "MYCELIA_DEVICE_DIR"
SUFFIX = ".device"
COUNTER_SUFFIX = ".counter"
FORMAT = "mycelia-device-key/1"
#: The first counter of a new device.
FIRST_COUNTER = 1
#: Readings per POST (the host's default ``max_batch``).
MAX_BATCH = 256


# -- device key files ---------------------------------------------------------------------


def device_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where device keys live (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get(DEVICE_DIR_ENV):
        return Path(env[DEVICE_DIR_ENV]).expanduser()
    return wallet_dir(env).parent / "devices"


def device_path(name: str, folder: Path | None = None) -> Path:
    """Device ``name``'s key file, in ``folder`` or :func:`device_dir`."""
    return (device_dir() if folder is None else folder) / f"{key_name(name, 'device')}{SUFFIX}"


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write ``path`` (0600 from creation), fsync it and its folder."""
    flags = os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_secret(key_type: str) -> bytes:
    if key_type == ED25519:
        return os.urandom(32)
    while True:  # a uniform scalar in [1, n-1], by rejection
        secret = os.urandom(32)
        if 1 <= int.from_bytes(secret, "big") < P256_N:
            return secret


def _device_key(key_type: str, secret: bytes) -> DeviceKey:
    return Ed25519DeviceKey(secret) if key_type == ED25519 else P256DeviceKey(secret)


def _new_device_file(name: str, doc: dict[str, str], folder: Path | None) -> Path:
    """Write device ``name``'s file (refused if the name is taken): 0600
    from creation, never overwritten, fsynced with its folder (0700)."""
    path = device_path(name, folder)
    if path.exists():
        raise fail("device_exists", f"a device named {name!r} already exists at {path}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise fail("device_dir", f"cannot create {path.parent}: {exc.strerror or exc}") from None
    if os.name == "posix" and stat.S_IMODE(path.parent.stat().st_mode) & 0o077:
        stderr().print(Text(f"warning: {path.parent} is accessible by other users; chmod 700 it"))
    try:
        _write_private(path, (json.dumps(doc, indent=2) + "\n").encode(), exclusive=True)
        _fsync_dir(path.parent)
    except FileExistsError:
        raise fail("device_exists", f"a device named {name!r} already exists at {path}") from None
    except OSError as exc:
        raise fail("device_file", f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _device_doc(key_type: str, public: bytes, secret: bytes | None) -> dict[str, str]:
    """A device file's JSON (see the module docstring): no ``secret`` for a
    device whose private key stays in the device."""
    doc = {"format": FORMAT, "key_type": key_type}
    if secret is not None:
        doc["secret"] = hex_out(secret)
    doc["public_key"] = hex_out(public)
    doc["device"] = hex_out(device_id(key_type, public))
    return doc


def create_device(name: str, key_type: str, folder: Path | None = None) -> tuple[DeviceKey, Path]:
    """A new device key in a new file (refused if the name is taken)."""
    if device_path(name, folder).exists():  # before making a key
        raise fail("device_exists", f"a device named {name!r} already exists")
    secret = _new_secret(key_type)
    key = _device_key(key_type, secret)
    return key, _new_device_file(name, _device_doc(key_type, key.public, secret), folder)


@dataclass(frozen=True, slots=True)
class DeviceFile:
    """A device as its file names it: key type, public key and, when the
    file holds it, the private key — not for a device imported by its
    public key, whose key stays in the device (a secure element)."""

    name: str
    key_type: str
    public: bytes
    key: DeviceKey | None

    @property
    def device(self) -> bytes:
        return device_id(self.key_type, self.public)


def _hex_field(doc: Mapping[str, Any], name: str) -> bytes:
    value = doc[name]
    if type(value) is not str:
        raise ValueError(f"{name} is not a hex string")
    return bytes.fromhex(value.removeprefix("0x"))


def _parse_device_doc(doc: Any, name: str) -> DeviceFile:
    """A ``mycelia-device-key/1`` document, checked: its key type, a valid
    public key, the device id it implies and, with a secret, that the
    secret's public key is that key. ``ValueError`` otherwise."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    key_type = doc.get("key_type")
    if key_type not in (ED25519, P256):
        raise ValueError(f"key_type {key_type!r} is not {ED25519} or {P256}")
    public = _hex_field(doc, "public_key")
    try:
        check_device_key(key_type, public)
    except Refused as exc:
        raise ValueError(exc.detail) from None
    if _hex_field(doc, "device") != device_id(key_type, public):
        raise ValueError("its device id is not its public key's")
    key = None
    if "secret" in doc:
        key = _device_key(key_type, _hex_field(doc, "secret"))
        if key.public != public:
            raise ValueError("its secret is not its public key's")
    return DeviceFile(name, key_type, public, key)


def read_device(name: str, folder: Path | None = None) -> DeviceFile:
    """Device ``name``'s file, checked (see :func:`_parse_device_doc`); its
    file must be private, as any key file."""
    path = device_path(name, folder)
    if not path.exists():
        raise fail("unknown_device", f"no device named {name!r} in {path.parent}")
    try:
        return _parse_device_doc(json.loads(read_private(path, "device key")), name)
    except KeyFileError as exc:
        raise fail("device_file", str(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise fail("device_file", f"{path} is corrupt: {exc}") from None


def load_device(name: str, folder: Path | None = None) -> DeviceKey:
    """A device's private key, for what signs as the device (readings, a
    proof of possession); ``no_private_key`` for a device imported by its
    public key."""
    found = read_device(name, folder)
    if found.key is None:
        raise fail(
            "no_private_key",
            f"device {name!r} was imported by its public key only: signing as the device "
            "needs its private key (the device signs its own readings; import a private "
            "key with `mycelia sensor import NAME --key-file FILE`)",
        )
    return found.key


def device_ref(value: str) -> bytes:
    """A device id from hex (``0x``…, 32 bytes) or the name of a local device."""
    hexits = value.removeprefix("0x")
    if len(hexits) == 64:
        try:
            return bytes.fromhex(hexits)
        except ValueError:
            pass
    return read_device(value).device


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (the device's key file) while held."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def reserve_counters(
    name: str, n: int = 1, *, at: int | None = None, folder: Path | None = None
) -> int:
    """Reserve ``n`` consecutive counters of device ``name``; returns the
    first. They are durable before this returns (see the module docstring).
    ``at`` asks for a given first counter (a test of the host's replay
    check); the next reservation still starts above every counter used."""
    path = device_path(name, folder)
    load_device(name, folder)  # the device exists, can sign, and its file is private
    counter_file = path.with_suffix(COUNTER_SUFFIX)
    with _locked(path):
        try:
            stored = int(counter_file.read_text().strip())
        except FileNotFoundError:
            stored = FIRST_COUNTER
        except ValueError:
            raise fail("device_file", f"{counter_file} does not hold a counter") from None
        first = stored if at is None else at
        tmp = counter_file.with_suffix(COUNTER_SUFFIX + ".tmp")
        _write_private(tmp, f"{max(stored, first + n)}\n".encode(), exclusive=False)
        tmp.replace(counter_file)
        _fsync_dir(path.parent)
    return first


# -- importing keys made elsewhere --------------------------------------------------------------

#: A key file to import is small; anything larger is not one.
_MAX_KEY_FILE = 64 * 1024


def _public_from_hex(key_type: str, text: str) -> bytes:
    """A public key given in hex: Ed25519 32 bytes; P-256 SEC1 compressed
    (33), uncompressed (65, ``04 ‖ X ‖ Y``) or the bare ``X ‖ Y`` (64) a
    secure element such as the ATECC608 reports — stored compressed."""
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise fail("invalid_params", "--public-key: not hex") from None
    if key_type == P256 and len(raw) in (64, 65):
        point = b"\x04" + raw if len(raw) == 64 else raw
        try:
            raw = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point).public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
        except ValueError:
            raise fail("bad_key", "--public-key: not a point on P-256") from None
    try:
        return check_device_key(key_type, raw, "--public-key")
    except Refused as exc:
        raise fail(exc.reason.value, exc.detail) from None


def _read_key_file(path: Path) -> tuple[bytes, int]:
    """The bytes of a key file to import and its mode."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise fail("key_file", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise fail("key_file", f"{path} is not a regular file")
        chunks, total = [], 0
        while total <= _MAX_KEY_FILE:
            chunk = os.read(fd, _MAX_KEY_FILE + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > _MAX_KEY_FILE:
        raise fail("key_file", f"{path} is too large to be a key file")
    return b"".join(chunks), stat.S_IMODE(st.st_mode)


def _from_crypto_key(key: object, path: Path) -> tuple[str, bytes, bytes | None]:
    """``(key_type, public key, secret or None)`` of a key ``cryptography`` loaded."""
    raw, compressed = serialization.Encoding.Raw, serialization.PublicFormat.CompressedPoint
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        return ED25519, Ed25519DeviceKey(seed).public, seed
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ED25519, key.public_bytes(raw, serialization.PublicFormat.Raw), None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        secret = key.private_numbers().private_value.to_bytes(32, "big")
        return P256, P256DeviceKey(secret).public, secret
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return P256, key.public_bytes(serialization.Encoding.X962, compressed), None
    curve = getattr(getattr(key, "curve", None), "name", None)
    what = f"an EC key on {curve}" if curve else f"a {type(key).__name__.lstrip('_')}"
    raise fail("unsupported_key", f"{path} holds {what}: a device key is Ed25519 or P-256")


def _parse_key_file(data: bytes, path: Path) -> tuple[str, bytes, bytes | None]:
    """``(key_type, public key, secret or None)`` from a key file in one of
    the formats ``sensor import --key-file`` takes (see the module docstring)."""
    if data.lstrip().startswith(b"{"):
        try:
            doc = json.loads(data)
            found = _parse_device_doc(doc, path.name)
            secret = _hex_field(doc, "secret") if "secret" in doc else None
        except (ValueError, KeyError, TypeError) as exc:
            raise fail("key_file", f"{path}: not a usable {FORMAT} file: {exc}") from None
        return found.key_type, found.public, secret
    pem = data.lstrip().startswith(b"-----BEGIN")
    loaders: list[Callable[[], object]]
    if pem and b"PUBLIC KEY-----" in data.split(b"\n", 1)[0]:
        loaders = [lambda: serialization.load_pem_public_key(data)]
    elif pem:
        loaders = [lambda: serialization.load_pem_private_key(data, password=None)]
    else:
        loaders = [
            lambda: serialization.load_der_private_key(data, password=None),
            lambda: serialization.load_der_public_key(data),
        ]
    for load in loaders:
        try:
            key = load()
        except TypeError:  # "Password was not given but private key is encrypted"
            raise fail(
                "encrypted_key",
                f"{path} is encrypted: decrypt it first (openssl pkey -in {path.name} -out "
                "PLAIN.pem); the imported copy is kept unencrypted, 0600, as every device key",
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            continue
        return _from_crypto_key(key, path)
    raise fail(
        "key_file",
        f"{path} is not a {FORMAT} file, nor a PEM or DER key "
        "(PKCS#8, SEC1 or SubjectPublicKeyInfo)",
    )


def import_device(
    name: str,
    *,
    key_type: str | None = None,
    public_key: str | None = None,
    key_file: Path | None = None,
    folder: Path | None = None,
) -> tuple[DeviceFile, Path]:
    """A device file for a key made elsewhere (a maker's factory, a secure
    element): from its public key in hex (``key_type`` required), or from a
    key file (``key_type``, if given, must match it). Refused if the name
    is taken, the key is not a valid key of its type, or the file holds a
    private key others can read."""
    if (public_key is None) == (key_file is None):
        raise fail("invalid_params", "give one of --public-key HEX and --key-file FILE")
    if device_path(name, folder).exists():
        raise fail("device_exists", f"a device named {name!r} already exists")
    secret: bytes | None = None
    if key_file is None:
        if key_type is None or public_key is None:
            raise fail("invalid_params", "--public-key needs --type (ed25519 or p256)")
        kt, public = key_type, _public_from_hex(key_type, public_key)
    else:
        data, mode = _read_key_file(key_file)
        kt, public, secret = _parse_key_file(data, key_file)
        if secret is not None and os.name == "posix" and mode & 0o077:
            raise fail(
                "key_file",
                f"{key_file} holds a private key and others can access it (mode {mode:04o}); "
                "chmod 600 it first",
            )
        if key_type is not None and key_type != kt:
            raise fail("key_type_mismatch", f"{key_file} holds a {kt} key, not {key_type}")
        try:
            check_device_key(kt, public, str(key_file))
        except Refused as exc:
            raise fail(exc.reason.value, exc.detail) from None
    path = _new_device_file(name, _device_doc(kt, public, secret), folder)
    key = None if secret is None else _device_key(kt, secret)
    return DeviceFile(name, kt, public, key), path


# -- parsing ---------------------------------------------------------------------------------


def parse_metric(spec: str) -> Metric:
    """``name:unit:exponent:min:max`` (the unit may be empty)."""
    parts = spec.split(":")
    if len(parts) != 5:
        raise fail("invalid_params", f"--metric {spec!r}: expected name:unit:exponent:min:max")
    name, unit, *numbers = parts
    try:
        exponent, low, high = (int(x) for x in numbers)
    except ValueError:
        detail = f"--metric {spec!r}: exponent, min and max are integers"
        raise fail("invalid_params", detail) from None
    try:
        return Metric(name, unit, exponent, low, high)
    except Refused as exc:
        raise fail(exc.reason.value, f"--metric {spec!r}: {exc.detail}") from None


def _host_did(spec: str) -> str:
    """A host node: its did:key, or its data directory / ``URL#COOKIEFILE``
    (asked for its key over the RPC)."""
    if spec.startswith("did:"):
        try:
            did_decode(spec)
        except Refused as exc:
            raise fail(exc.reason.value, f"--host: {exc.detail}") from None
        return spec
    try:
        with Client(Endpoint.from_node_spec(spec)) as client:
            return client.node_info().did
    except ClientError as exc:
        raise fail(exc.reason, f"--host {spec}: {exc.detail}") from None


def _reading(
    key: DeviceKey, economy: bytes, counter: int, metric: str, value: int, exponent: int
) -> SignedReading:
    """One reading, signed now by the device key (its clock: the wall clock)."""
    try:
        return Reading(
            economy, key.device, counter, int(time.time() * 1000), metric, value, exponent
        ).sign(key)
    except Refused as exc:
        raise fail(exc.reason.value, exc.detail) from None


# -- simulation --------------------------------------------------------------------------------


#: A 5 kWp rooftop: its power at solar noon on a clear day.
PEAK_W = 5_000.0


def _solar_wh(hour: float, seconds: float, rng: random.Random) -> float:
    """Energy (Wh) over ``seconds`` at ``hour``: a sine from 06:00 to 18:00,
    with passing clouds."""
    sun = math.sin(math.pi * (hour - 6.0) / 12.0) if 6.0 < hour < 18.0 else 0.0
    clouds = 0.7 + 0.3 * rng.random()
    return PEAK_W * sun * clouds * seconds / 3600.0


def _temperature_dc(hour: float, seconds: float, rng: random.Random) -> float:
    """Air temperature in tenths of °C: 12–24 °C, warmest at 15:00."""
    return (18.0 + 6.0 * math.sin(2 * math.pi * (hour - 9.0) / 24.0) + rng.gauss(0, 0.2)) * 10


@dataclass(frozen=True, slots=True)
class Model:
    """A kind of virtual device: the metric it declares and reports, and
    its value for a reading at simulated ``hour`` covering ``seconds``.
    ``cumulative`` values (energy) carry their fractions to the next
    reading, so the sum of the readings is the energy measured."""

    name: str
    device_kind: str
    metric: Metric
    sample: Callable[[float, float, random.Random], float]
    cumulative: bool


MODELS = {
    "solar": Model(
        "solar", "solar-meter", Metric("energy_wh", "Wh", 0, 0, 1_000_000), _solar_wh, True
    ),
    "temp": Model(
        "temp", "temp-sensor", Metric("temp_c", "degC", -1, -400, 1_000), _temperature_dc, False
    ),
}


@dataclass(slots=True)
class _Virtual:
    name: str
    key: DeviceKey
    model: Model
    rng: random.Random
    sent: int = 0
    residue: float = 0.0


@dataclass(slots=True)
class Tally:
    """Readings sent and the host's answers, by reason."""

    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    @property
    def sent(self) -> int:
        return self.accepted + sum(self.refused.values())

    def add(self, results: Sequence[IngestResult]) -> None:
        for r in results:
            if r.accepted:
                self.accepted += 1
            else:
                self.refused[r.reason or "refused"] += 1

    def text(self) -> str:
        refused = sum(self.refused.values())
        why = ", ".join(f"{k}: {v}" for k, v in sorted(self.refused.items()))
        return f"sent {self.sent}: accepted {self.accepted}, refused {refused}" + (
            f" ({why})" if why else ""
        )

    def to_json(self) -> dict[str, Any]:
        return {"sent": self.sent, "accepted": self.accepted, "refused": dict(self.refused)}


class Simulator:
    """Virtual devices producing signed readings at ``rate`` per second
    each. Reading ``k`` of a device is taken at ``k / rate`` seconds after
    the start, at simulated hour ``start_hour + k / rate × speed / 3600``;
    values depend only on that and the device's seeded generator, so a run
    is reproducible whatever the timing of the loop."""

    def __init__(
        self,
        economy: bytes,
        devices: Sequence[tuple[str, DeviceKey, Model]],
        *,
        rate: float = 1.0,
        speed: float = 1.0,
        start_hour: float = 12.0,
        reserve: Callable[[str, int], int] = reserve_counters,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.economy = economy
        self.rate = rate
        self.speed = speed
        self.start_hour = start_hour
        self._reserve = reserve
        self._clock = clock
        self.devices = [
            _Virtual(name, key, model, random.Random(key.device)) for name, key, model in devices
        ]

    def _value(self, dev: _Virtual, k: int) -> int:
        seconds = self.speed / self.rate
        hour = (self.start_hour + k * seconds / 3600.0) % 24.0
        raw = dev.model.sample(hour, seconds, dev.rng)
        if dev.model.cumulative:
            raw += dev.residue
            value = math.floor(raw)
            dev.residue = raw - value
        else:
            value = round(raw)
        m = dev.model.metric
        return min(max(value, m.min), m.max)

    def due(self, elapsed: float, count: int | None = None) -> list[SignedReading]:
        """The readings every device owes at ``elapsed`` seconds (its first at 0)."""
        out = []
        for dev in self.devices:
            owed = math.floor(elapsed * self.rate) + 1
            if count is not None:
                owed = min(owed, count)
            n = owed - dev.sent
            if n <= 0:
                continue
            first = self._reserve(dev.name, n)
            m = dev.model.metric
            for i in range(n):
                value = self._value(dev, dev.sent + i)
                reading = Reading(
                    self.economy,
                    dev.key.device,
                    first + i,
                    self._clock(),
                    m.name,
                    value,
                    m.exponent,
                )
                out.append(reading.sign(dev.key))
            dev.sent += n
        return out

    def run(
        self,
        post: Callable[[Sequence[SignedReading]], list[IngestResult]],
        *,
        count: int | None = None,
        seconds: float | None = None,
        stop: threading.Event | None = None,
        every: Callable[[Tally], None] | None = None,
    ) -> Tally:
        """Send what is due, batched, until ``count`` readings per device were
        made, ``seconds`` passed or ``stop`` is set. A host that cannot be
        reached counts its readings as refused ``host_unreachable``; the
        run goes on. ``every`` is called after each round."""
        stop = stop or threading.Event()
        tally = Tally()
        tick = min(1.0, max(0.1, 1.0 / self.rate))
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            done = seconds is not None and elapsed >= seconds
            batch = self.due(elapsed if seconds is None else min(elapsed, seconds), count)
            for i in range(0, len(batch), MAX_BATCH):
                chunk = batch[i : i + MAX_BATCH]
                try:
                    tally.add(post(chunk))
                except ClientError as exc:
                    tally.add([IngestResult(status="refused", reason=exc.reason)] * len(chunk))
            if every is not None:
                every(tally)
            if count is not None and all(d.sent >= count for d in self.devices):
                break
            if done or stop.wait(tick):
                break
        return tally


def _virtual_devices(specs: Sequence[str]) -> list[tuple[str, DeviceKey, Model]]:
    out = []
    for spec in specs:
        name, _, model_name = spec.partition(":")
        model = MODELS.get(model_name or "solar")
        if model is None:
            raise fail(
                "invalid_params", f"{spec!r}: the model is one of {', '.join(MODELS)} (NAME:MODEL)"
            )
        out.append((name, load_device(name), model))
    if len({key.device for _, key, _ in out}) != len(out):
        raise fail("invalid_params", "a device is named twice")
    return out


class _Claimer:
    """``simulate --claim``: claims each device's certified attestations as
    they come, as the owner, every ``interval`` seconds."""

    def __init__(
        self,
        client: Client,
        economy: bytes,
        owner: SigningKey,
        devices: Sequence[bytes],
        interval: float,
    ) -> None:
        self.client = client
        self.economy = economy
        self.owner = owner
        self.devices = devices
        self.interval = interval
        self._next = time.monotonic() + interval

    def __call__(self, tally: Tally) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.interval
        for device in self.devices:
            try:
                plan = self.client.prepare_claim(self.economy, device)
                if plan is None:
                    continue
                entry_id = self.client.submit(self.owner, self.economy, plan.body)
                status = self.client.wait(entry_id, timeout=30)
            except ClientError as exc:
                _note(f"claim for {short(hex_out(device))}: {exc}")
                continue
            b = plan.body
            if status.certified:
                _note(
                    f"claimed {short(hex_out(device))} counters {b.first_counter}..{b.last_counter}"
                    f": total {b.total}, minted {plan.minted}, carry {plan.carry}"
                )
            else:
                _note(
                    f"claim for {short(hex_out(device))} refused: {status.reason}: {status.detail}"
                )


def _note(text: str) -> None:
    stderr().print(Text(time.strftime("%H:%M:%S ") + text))


# -- commands ------------------------------------------------------------------------------


@click.group(cls=_Group)
def sensor() -> None:
    """Sensor devices: keys, registration, readings, claims and audits."""


@sensor.command("keygen")
@click.argument("name")
@click.option(
    "--type",
    "key_type",
    type=click.Choice([ED25519, P256]),
    default=ED25519,
    show_default=True,
    help="ed25519, or p256 (as a secure element such as the ATECC608 holds).",
)
@json_option
def sensor_keygen(name: str, key_type: str, as_json: bool) -> None:
    """Create device key NAME; print its device id and public key."""
    key, path = create_device(name, key_type)
    item = {
        "name": name,
        "key_type": key_type,
        "device": hex_out(key.device),
        "public_key": hex_out(key.public),
        "path": str(path),
    }
    if as_json:
        print_json(item)
        return
    out = stdout()
    out.print(Text(f"device key {name} created", style="bold green"))
    out.print(Text(f"  device      {item['device']}"))
    out.print(Text(f"  key type    {key_type}"))
    out.print(Text(f"  public key  {item['public_key']}"))
    out.print(Text(f"  key         {path} (not encrypted; keep it private)"))


@sensor.command("import")
@click.argument("name")
@click.option(
    "--public-key",
    metavar="HEX",
    help="The device's public key, made elsewhere (its private key stays in the device): "
    "Ed25519 32 bytes; P-256 compressed (33), uncompressed (65) or X||Y (64).",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A key file: a mycelia-device-key/1 file, or a PEM/DER Ed25519 or P-256 key "
    "(private: PKCS#8 or SEC1; public: SubjectPublicKeyInfo).",
)
@click.option(
    "--type",
    "key_type",
    type=click.Choice([ED25519, P256]),
    help="The key type: required with --public-key; with --key-file, checked against it.",
)
@json_option
def sensor_import(
    name: str, public_key: str | None, key_file: Path | None, key_type: str | None, as_json: bool
) -> None:
    """Add device NAME whose key was made elsewhere (a maker's factory, a
    secure element), from its public key or a key file; print its device id.
    Without its private key it can be registered (the device signs the
    proof of possession: register --pop-message / --pop) and audited, and
    its readings come from the device itself."""
    dev, path = import_device(name, key_type=key_type, public_key=public_key, key_file=key_file)
    item = {
        "name": name,
        "key_type": dev.key_type,
        "device": hex_out(dev.device),
        "public_key": hex_out(dev.public),
        "private_key": dev.key is not None,
        "path": str(path),
    }
    if as_json:
        print_json(item)
        return
    out = stdout()
    out.print(Text(f"device {name} imported", style="bold green"))
    out.print(Text(f"  device      {item['device']}"))
    out.print(Text(f"  key type    {dev.key_type}"))
    out.print(Text(f"  public key  {item['public_key']}"))
    if dev.key is None:
        out.print(Text(f"  key         {path} (public key only: the device signs)"))
    else:
        out.print(Text(f"  key         {path} (not encrypted; keep it private)"))


@sensor.command("register")
@click.argument("name")
@economy_option
@click.option("--owner", required=True, metavar="WALLET", help="The owner's wallet (signs).")
@click.option(
    "--host",
    required=True,
    metavar="NODE",
    help="The node that will take the device's readings: its did:key, its data directory, "
    "or URL#COOKIEFILE.",
)
@click.option("--kind", "device_kind", default="solar-meter", show_default=True)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    required=True,
    metavar="NAME:UNIT:EXP:MIN:MAX",
    help="A metric the device reports, e.g. energy_wh:Wh:0:0:100000 (repeatable).",
)
@click.option(
    "--pop-message",
    is_flag=True,
    help="Print the message the device key must sign for this registration (and its "
    "SHA-256, what a secure element signs); submit nothing.",
)
@click.option(
    "--pop",
    metavar="HEX",
    help="The device's signature of that message (64 bytes), for a device whose private "
    "key is not here.",
)
@wait_options
@rpc_options
@json_option
@click.pass_context
def sensor_register(
    ctx: click.Context,
    name: str,
    economy: str,
    owner: str,
    host: str,
    device_kind: str,
    metrics: tuple[str, ...],
    pop_message: bool,
    pop: str | None,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Register device NAME in an impact economy, owned by a wallet and
    hosted by a node: the owner's entry, with the device key's proof of
    possession — signed here with the device's private key, or, for a
    device imported by its public key, by the device (--pop-message prints
    what it signs, --pop takes its signature)."""
    eid = economy_id(economy)
    declared = tuple(parse_metric(m) for m in metrics)
    dev = read_device(name)
    host_did = _host_did(host)
    owner_key = load_wallet(owner)
    host_key = did_decode(host_did)
    try:  # the body's own checks first: a message is signed only for a valid body
        DeviceRegister(dev.key_type, dev.public, device_kind, host_key, declared, bytes(64))
    except Refused as exc:
        raise fail(exc.reason.value, exc.detail) from None
    statement = DeviceRegister.statement_id(
        eid, owner_key.public, dev.key_type, dev.public, device_kind, host_key, declared
    )
    message = DEVICE.message(statement)
    if pop_message:
        item = {
            "device": hex_out(dev.device),
            "message": hex_out(message),
            "sha256": hex_out(hashlib.sha256(message).digest()),
        }
        if as_json:
            print_json(item)
        else:
            stdout().print(Text(f"message  {item['message']}"))
            stdout().print(Text(f"sha256   {item['sha256']}"))
        return
    if pop is not None:
        signature = _pop_in(pop)
        try:
            verify_device_signature(dev.key_type, dev.public, DEVICE, statement, signature)
        except Refused as exc:
            raise fail(exc.reason.value, f"--pop: {exc.detail}") from None
    elif dev.key is not None:
        signature = dev.key.sign(DEVICE, statement)
    else:
        raise fail(
            "needs_pop",
            f"device {name!r} was imported by its public key: have the device sign the message "
            "--pop-message prints (with the same arguments), then pass it with --pop HEX",
        )
    body = DeviceRegister(dev.key_type, dev.public, device_kind, host_key, declared, signature)
    with connect(ctx) as client:
        entry_id = client.submit(owner_key, eid, body)
        what = f"device {hex_out(dev.device)} ({device_kind}) registered, hosted by {host_did}"
        submit_and_report(client, entry_id, no_wait=no_wait, timeout=timeout, what=what)


def _pop_in(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise fail("invalid_params", "--pop: not hex") from None
    if len(raw) != 64:
        raise fail("invalid_params", f"--pop: a device signature is 64 bytes, not {len(raw)}")
    return raw


@sensor.command("push")
@click.argument("name")
@economy_option
@click.option(
    "--to", "url", required=True, metavar="URL", help="The host's ingest: http://HOST:PORT"
)
@click.option("--metric", required=True, help="The metric, as registered (e.g. energy_wh).")
@click.option("--value", type=int, required=True, help="The value, in units of 10^exponent.")
@click.option("--exponent", type=int, default=0, show_default=True, help="As registered.")
@click.option("--counter", type=click.IntRange(min=0), help="Use this counter (default: the next).")
@json_option
def sensor_push(
    name: str,
    economy: str,
    url: str,
    metric: str,
    value: int,
    exponent: int,
    counter: int | None,
    as_json: bool,
) -> None:
    """Sign one reading with device NAME's key and send it to its host."""
    eid = economy_id(economy)
    key = load_device(name)
    used = reserve_counters(name, 1, at=counter)
    signed = _reading(key, eid, used, metric, value, exponent)
    with Ingest(url) as ingest:
        (result,) = ingest.post([signed])
    if as_json:
        print_json({"counter": used, **result.to_json()})
    elif result.accepted:
        stdout().print(Text(f"accepted {hex_out(signed.id)} (counter {used})"))
    if not result.accepted:
        raise fail(result.reason or "refused", result.detail or f"reading {used} was refused")


@sensor.command("simulate")
@economy_option
@click.option(
    "--to", "url", required=True, metavar="URL", help="The host's ingest: http://HOST:PORT"
)
@click.argument("devices", nargs=-1, required=True, metavar="DEVICE[:MODEL]...")
@click.option(
    "--rate",
    type=click.FloatRange(min=0.01, max=100),
    default=1.0,
    show_default=True,
    help="Readings per second, per device.",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after N readings per device.")
@click.option("--seconds", type=click.FloatRange(min=0), help="Stop after S seconds.")
@click.option(
    "--speed",
    type=click.FloatRange(min=0.001),
    default=1.0,
    show_default=True,
    help="Simulated seconds per real second (600: a day in 144 s).",
)
@click.option(
    "--start-hour",
    type=click.FloatRange(0, 24, max_open=True),
    help="Simulated hour of day at the start (default: now, local time).",
)
@click.option(
    "--claim",
    "claim_as",
    metavar="WALLET",
    help="Also claim the devices' certified attestations as this owner wallet.",
)
@click.option("--claim-every", type=click.FloatRange(min=1), default=10.0, show_default=True)
@rpc_options
@json_option
@click.pass_context
def sensor_simulate(
    ctx: click.Context,
    economy: str,
    url: str,
    devices: tuple[str, ...],
    rate: float,
    count: int | None,
    seconds: float | None,
    speed: float,
    start_hour: float | None,
    claim_as: str | None,
    claim_every: float,
    as_json: bool,
) -> None:
    """Play virtual devices (registered device keys) sending readings to
    their host: MODEL solar (default: energy in Wh on a daylight curve) or
    temp (temperature in 0.1 °C). Runs until --count, --seconds or Ctrl-C."""
    if count is not None and seconds is not None:
        raise fail("invalid_params", "--count and --seconds exclude each other")
    eid = economy_id(economy)
    if start_hour is None:
        now = time.localtime()
        start_hour = now.tm_hour + now.tm_min / 60
    sim = Simulator(eid, _virtual_devices(devices), rate=rate, speed=speed, start_hour=start_hour)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C, and the SIGTERM with which the devnet stops its background
        # simulator, end the run after the current round: the totals print.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    hooks: list[Callable[[Tally], None]] = []
    if not as_json:
        hooks.append(_Progress())

    def every(tally: Tally) -> None:
        for hook in hooks:
            hook(tally)

    with contextlib.ExitStack() as stack:
        ingest = stack.enter_context(Ingest(url))
        if claim_as is not None:
            client = stack.enter_context(connect(ctx))
            owned = [d.key.device for d in sim.devices]
            hooks.append(_Claimer(client, eid, load_wallet(claim_as), owned, claim_every))
        tally = sim.run(ingest.post, count=count, seconds=seconds, stop=stop, every=every)
    if as_json:
        print_json(tally.to_json())
    else:
        stdout().print(Text(tally.text()))
    if tally.sent and not tally.accepted:
        reason = tally.refused.most_common(1)[0][0]
        raise fail(reason, f"none of the {tally.sent} readings was accepted")


class _Progress:
    """A line every 10 s while a simulation runs."""

    def __init__(self) -> None:
        self._next = time.monotonic() + 10

    def __call__(self, tally: Tally) -> None:
        if time.monotonic() >= self._next:
            self._next += 10
            _note(tally.text())


@sensor.command("claim")
@click.argument("name")
@economy_option
@click.option("--owner", required=True, metavar="WALLET", help="The owner's wallet (signs).")
@wait_options
@rpc_options
@json_option
@click.pass_context
def sensor_claim(
    ctx: click.Context,
    name: str,
    economy: str,
    owner: str,
    no_wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Claim the credits of device NAME's certified attestations not yet
    claimed (the next 16 at most), as its owner."""
    eid = economy_id(economy)
    device = device_ref(name)
    owner_key = load_wallet(owner)
    with connect(ctx) as client:
        info = client.economy_get(eid)
        plan = client.prepare_claim(eid, device)
        if plan is None:
            if as_json:
                print_json(None)
            else:
                stdout().print(
                    Text(
                        f"nothing to claim: no certified attestation of {name} after its last claim"
                    )
                )
            return
        entry_id = client.submit(owner_key, eid, plan.body)
        b = plan.body
        credits = f"{format_amount(plan.minted, info.decimals)} {info.symbol}"
        what = (
            f"claimed counters {b.first_counter}..{b.last_counter} of {name} "
            f"({len(b.attestations)} attestations): total {b.total}, minted {credits} "
            f"({plan.minted}), carry {plan.carry}"
        )
        if as_json:
            status = None if no_wait else client.wait(entry_id, timeout=timeout)
            state = "submitted" if status is None else status.status
            print_json({"id": hex_out(entry_id), "status": state, **plan.to_json()})
            if status is not None and not status.certified:
                raise fail(status.reason or "refused", status.detail or "the claim was refused")
            return
        submit_and_report(client, entry_id, no_wait=no_wait, timeout=timeout, what=what)


@sensor.command("devices")
@economy_option
@rpc_options
@json_option
@click.pass_context
def sensor_devices(ctx: click.Context, economy: str, as_json: bool) -> None:
    """The devices the node hosts in an economy."""
    eid = economy_id(economy)
    with connect(ctx) as client:
        items = client.sensor_devices(eid)
    if as_json:
        print_json([d.to_json() for d in items])
        return
    if not items:
        stdout().print(Text("the node hosts no device in this economy"))
        return
    table = Table("device", "kind", "owner", "readings", "last accepted", "last attested")
    for d in items:
        table.add_row(
            hex_out(d.device),
            d.kind,
            d.owner,
            str(d.readings),
            "-" if d.last_accepted is None else str(d.last_accepted),
            "-" if d.last_attested is None else str(d.last_attested),
        )
    stdout().print(table)


@sensor.command("audit")
@click.argument("device")
@economy_option
@click.option("--first", type=click.IntRange(min=0), help="The first counter (default: all).")
@click.option("--last", type=click.IntRange(min=0), help="The last counter (default: all).")
@rpc_options
@json_option
@click.pass_context
def sensor_audit(
    ctx: click.Context,
    device: str,
    economy: str,
    first: int | None,
    last: int | None,
    as_json: bool,
) -> None:
    """Verify a device's readings end to end, through this node (which asks
    the device's host): each device signature under the certified
    registration, each Merkle proof to a certified attestation's root,
    every certificate against the economy's genesis. DEVICE: an id or a
    local device name."""
    eid = economy_id(economy)
    dev = device_ref(device)
    if first is not None and last is not None and first > last:
        raise fail("invalid_params", "--first is after --last")
    with connect(ctx) as client:
        info = client.economy_get(eid)
        report = client.audit(eid, dev, first, last)
    if as_json:
        print_json(report.to_json())
    else:
        _print_audit(report, info)
    failures = report.failures
    if failures:
        head = failures[0]
        if isinstance(head, ReadingCheck):
            what = f"reading {head.counter}"
        else:
            what = f"attestation {hex_out(head.id)}"
        raise fail(
            head.reason or "failed",
            f"{what}: {head.detail} ({len(failures)} failed of "
            f"{len(report.attestations) + len(report.readings)} checks)",
        )


def _print_audit(report: AuditReport, info: EconomyInfo) -> None:
    out = stdout()
    g = info.signed.genesis
    span = "all counters"
    if report.first is not None or report.last is not None:
        span = f"counters {report.first or 0}..{'' if report.last is None else report.last}"
    out.print(Text(f"audit of device {hex_out(report.device)} in {g.name}, {span}", style="bold"))
    out.print(
        Text(
            f"  genesis       {hex_out(report.economy)}: hashes to the economy id, signed by "
            f"{len(info.signed.signatures)} of {len(g.validators)} validators (quorum {g.quorum})"
        )
    )
    for a in report.attestations:
        if a.status == FAILED and a.count is None:
            out.print(Text(f"  attestation   {hex_out(a.id)}: FAILED {a.reason}: {a.detail}"))
            continue
        mark = "verified" if a.status == VERIFIED else f"FAILED {a.reason}: {a.detail}"
        out.print(
            Text(
                f"  attestation   {hex_out(a.id)} counters {a.first}..{a.last}, "
                f"{a.count} readings, {a.seen} returned, by host {a.host}: certificate {mark}"
            )
        )
        out.print(Text(f"    registration {hex_out(a.registration or b'')}: certificate verified"))
    n = len(report.readings)
    verified, unattested = report.count(VERIFIED), report.count(UNATTESTED)
    out.print(
        Text(
            f"  readings      {n} returned: {verified} verified (device signature under the "
            f"certified registration, Merkle proof to the certified root), "
            f"{unattested} not attested yet, {report.count(FAILED)} failed"
        )
    )
    for r in report.readings:
        if r.status == FAILED:
            out.print(Text(f"    reading {r.counter}: FAILED {r.reason}: {r.detail}"))
    if report.ok:
        out.print(
            Text(f"verified: {verified} readings back to their device's signature", style="green")
        )
