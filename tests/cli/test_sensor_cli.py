"""``mycelia sensor`` and the client's sensor methods, against a FakeNode
whose FakeHost plays the device's host (readings checked by the protocol's
ingest check, attestations certified in a test world) and a fake ingest
port over real HTTP: device key files, counters, signed readings of both
key types, registration, simulation, claims and audits — honest and lied to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mycelia.api.encoding import hex_out
from mycelia.cli.sensor import (
    MODELS,
    Simulator,
    device_path,
    load_device,
    reserve_counters,
)
from mycelia.client import AsyncClient, Client, Endpoint, VerifyError
from mycelia.protocol import (
    ClaimCursor,
    DeviceKey,
    MerkleProof,
    Reading,
    SignedReading,
    SigningKey,
    device_id,
)
from mycelia.protocol.domains import DEVICE
from mycelia.protocol.sensors import P256_N
from mycelia.testing.economies import (
    TEMPERATURE,
    World,
    device_key,
    impact_genesis,
    key,
    validator_keys,
)
from tests.cli.conftest import new_wallet, ok, one_line_error, run
from tests.cli.fakenode import (
    COOKIE,
    FakeHost,
    FakeIngest,
    FakeNode,
    serve,
    serve_ingest,
)

HOST = key(5, "host")
KEY_TYPES = ["ed25519", "p256"]


@dataclass
class Net:
    """An impact economy (1000 Wh a credit), the node the CLI talks to
    (hosting the devices), its ingest port, and an owner wallet."""

    home: Path
    world: World
    fake: FakeNode
    host: FakeHost
    ingest: FakeIngest
    url: str
    owner: SigningKey

    @property
    def economy(self) -> str:
        return hex_out(self.world.id)

    def device(self, name: str, key_type: str = "ed25519", **register: Any) -> DeviceKey:
        """A device key made with ``sensor keygen``, registered in the world."""
        ok("sensor", "keygen", name, "--type", key_type)
        dev = load_device(name)
        self.fake.record(self.world.register(self.owner, dev, HOST, **register))
        return dev

    def push(self, name: str, *values: int) -> None:
        for v in values:
            ok(
                "sensor",
                "push",
                name,
                "--economy",
                self.economy,
                "--to",
                self.url,
                "--metric",
                "energy_wh",
                "--value",
                str(v),
            )

    def credits(self) -> int:
        return self.world.balance(self.owner)

    def cursor(self, dev: DeviceKey) -> ClaimCursor:
        raw = self.world.ledger.state.get_record(ClaimCursor.key(self.owner.public, dev.device))  # type: ignore[attr-defined]
        return ClaimCursor.decode(raw)


@pytest.fixture
def net(home: Path) -> Iterator[Net]:
    world = World(impact_genesis(), validator_keys(4))
    fake = FakeNode(world)
    host = FakeHost(fake, world, HOST)
    ingest = FakeIngest(host)
    with ExitStack() as stack:
        stack.enter_context(serve(fake, home / "node"))
        url = stack.enter_context(serve_ingest(ingest))
        owner = new_wallet(home, "owner")
        yield Net(home, world, fake, host, ingest, url, owner)


def client_for(fake: FakeNode) -> Client:
    return Client(Endpoint("http://127.0.0.1:8645", None, COOKIE), transport=fake.transport())


# -- device keys and counters -----------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_keygen_makes_a_private_key_file_naming_its_device(home: Path, key_type: str) -> None:
    out = json.loads(ok("sensor", "keygen", "meter", "--type", key_type, "--json").stdout)
    path = home / "devices" / "meter.device"  # the wallet folder's sibling
    assert out["path"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    public = bytes.fromhex(out["public_key"][2:])
    assert len(public) == (32 if key_type == "ed25519" else 33)
    assert out["device"] == hex_out(device_id(key_type, public))
    dev = load_device("meter")
    assert (dev.key_type, dev.public) == (key_type, public)
    assert set(_doc("meter")) == DOC_FIELDS  # the documented format, exactly
    text = ok("sensor", "keygen", "other", "--type", key_type).stdout
    assert hex_out(load_device("other").device) in text
    assert "device_exists" in one_line_error(run("sensor", "keygen", "meter"), "device_exists")


def test_device_dir_from_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYCELIA_DEVICE_DIR", str(home / "elsewhere"))
    ok("sensor", "keygen", "meter")
    assert (home / "elsewhere" / "meter.device").is_file()
    one_line_error(run("sensor", "keygen", "../escape"), "bad_device_name")


def test_a_device_file_others_can_read_is_refused(home: Path) -> None:
    ok("sensor", "keygen", "meter")
    device_path("meter").chmod(0o644)
    result = run(
        "sensor",
        "push",
        "meter",
        "--economy",
        "00" * 32,
        "--to",
        "http://127.0.0.1:9",
        "--metric",
        "energy_wh",
        "--value",
        "1",
    )
    assert "chmod 600" in one_line_error(result, "device_file")


def test_counters_are_reserved_durably_and_never_reused(home: Path) -> None:
    ok("sensor", "keygen", "meter")
    counter_file = device_path("meter").with_suffix(".counter")
    assert [reserve_counters("meter") for _ in range(2)] == [1, 2]
    assert reserve_counters("meter", 3) == 3  # 3, 4, 5
    assert counter_file.read_text() == "6\n"
    assert stat.S_IMODE(counter_file.stat().st_mode) == 0o600
    assert reserve_counters("meter", at=10) == 10
    assert reserve_counters("meter", at=2) == 2  # asked for (a replay test) ...
    assert reserve_counters("meter") == 11  # ... and the next is still above all used

    got: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            c = reserve_counters("meter")
            with lock:
                got.append(c)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(12, 42))


# -- readings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_push_signs_readings_the_protocol_verifies(net: Net, key_type: str) -> None:
    dev = net.device("meter", key_type)
    out = ok(
        "sensor",
        "push",
        "meter",
        "--economy",
        net.economy,
        "--to",
        net.url,
        "--metric",
        "energy_wh",
        "--value",
        "420",
    ).stdout
    content_type, body = net.ingest.requests[-1]
    assert content_type == "application/msgpack"
    signed = SignedReading.decode(body)  # one reading travels as its own bytes
    assert signed.encode() == body
    assert signed.verify(key_type, dev.public) == signed.id
    r = signed.reading
    assert (r.economy, r.device, r.counter, r.metric, r.value, r.exponent) == (
        net.world.id,
        dev.device,
        1,
        "energy_wh",
        420,
        0,
    )
    assert out.strip() == f"accepted {hex_out(signed.id)} (counter 1)"

    answer = json.loads(
        ok(
            "sensor",
            "push",
            "meter",
            "--economy",
            net.economy,
            "--to",
            net.url,
            "--metric",
            "energy_wh",
            "--value",
            "7",
            "--json",
        ).stdout
    )
    assert answer["counter"] == 2
    assert answer["status"] == "accepted"
    # The host refuses a replayed counter: one error line, non-zero exit.
    result = run(
        "sensor",
        "push",
        "meter",
        "--economy",
        net.economy,
        "--to",
        net.url,
        "--metric",
        "energy_wh",
        "--value",
        "7",
        "--counter",
        "2",
    )
    one_line_error(result, "replayed_counter")
    result = run(
        "sensor",
        "push",
        "meter",
        "--economy",
        net.economy,
        "--to",
        net.url,
        "--metric",
        "energy_wh",
        "--value",
        "7",
        "--exponent",
        "-1",
    )
    one_line_error(result, "unknown_metric")
    assert len(net.host.readings[dev.device]) == 2


def test_a_refused_request_and_an_unreachable_host_are_one_line(net: Net) -> None:
    net.device("meter")
    net.ingest.status = 413
    args = ["--economy", net.economy, "--metric", "energy_wh", "--value", "1"]
    one_line_error(run("sensor", "push", "meter", "--to", net.url, *args), "too_large")
    one_line_error(
        run("sensor", "push", "meter", "--to", "http://127.0.0.1:9", *args), "host_unreachable"
    )
    one_line_error(run("sensor", "push", "meter", "--to", "ftp://x", *args), "bad_endpoint")


# -- registration -----------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_register_submits_the_owners_entry_with_proof_of_possession(
    net: Net, key_type: str
) -> None:
    ok("sensor", "keygen", "meter", "--type", key_type)
    dev = load_device("meter")
    # The host named by its data directory: the CLI asks that node for its key.
    with serve(FakeNode(net.world, node_key=HOST), net.home / "hostnode") as hostdir:
        result = ok(
            "sensor",
            "register",
            "meter",
            "--economy",
            net.economy,
            "--owner",
            "owner",
            "--host",
            str(hostdir),
            "--metric",
            "energy_wh:Wh:0:0:100000",
            "--metric",
            "temp_c:degC:-1:-400:1000",
        )
    assert f"registered, hosted by {HOST.did}" in result.stdout
    record = net.world.device_record(dev)
    assert record is not None
    assert (record.owner, record.host, record.body.device_kind) == (
        net.owner.public,
        HOST.public,
        "solar-meter",
    )
    record.body.verify_pop(net.world.id, net.owner.public)
    assert [m.name for m in record.body.metrics] == ["energy_wh", "temp_c"]
    # A second registration of the device is refused by the ledger.
    again = run(
        "sensor",
        "register",
        "meter",
        "--economy",
        net.economy,
        "--owner",
        "owner",
        "--host",
        HOST.did,
        "--metric",
        "energy_wh:Wh:0:0:100000",
    )
    one_line_error(again, "already_registered")


def test_register_checks_its_arguments_first(net: Net) -> None:
    ok("sensor", "keygen", "meter")
    base = ["sensor", "register", "meter", "--economy", net.economy, "--owner", "owner"]
    one_line_error(run(*base, "--host", HOST.did, "--metric", "energy_wh:Wh:0"), "invalid_params")
    one_line_error(run(*base, "--host", HOST.did, "--metric", "e:Wh:0:9:1"), "malformed_body")
    one_line_error(run(*base, "--host", "did:key:nope", "--metric", "e:Wh:0:0:1"), "bad_key")
    not_impact = run(*base, "--host", HOST.did, "--metric", "e:Wh:0:0:1", "--kind", "toaster")
    one_line_error(not_impact, "not_allowed")


# -- keys made elsewhere: sensor import ---------------------------------------------------------

DOC_FIELDS = {"format", "key_type", "secret", "public_key", "device"}


def _doc(name: str) -> dict[str, Any]:
    """A device file as docs/sensors.md ("Device key files") describes it."""
    path = device_path(name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["format"] == "mycelia-device-key/1"
    for field in DOC_FIELDS & set(doc) - {"format", "key_type"}:
        assert doc[field].startswith("0x")
        assert doc[field] == doc[field].lower()
    assert bytes.fromhex(doc["device"][2:]) == device_id(
        doc["key_type"], bytes.fromhex(doc["public_key"][2:])
    )
    return doc


def _x_y(dev: DeviceKey) -> bytes:
    """The bare X || Y an ATECC608 reports for its P-256 key."""
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), dev.public)
    return point.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]


def _register_args(net: Net, name: str) -> list[str]:
    return [
        "sensor",
        "register",
        name,
        "--economy",
        net.economy,
        "--owner",
        "owner",
        "--host",
        HOST.did,
        "--metric",
        "energy_wh:Wh:0:0:100000",
    ]


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_a_device_imported_by_its_public_key_signs_its_own_registration(
    net: Net, key_type: str
) -> None:
    """The device (a secure element) keeps its key: import takes the public
    key, register prints what the device must sign and takes its signature;
    what would sign here says it needs the private key."""
    dev = device_key(7, key_type)  # the device, with its key
    public = _x_y(dev) if key_type == "p256" else dev.public
    out = json.loads(
        ok(
            "sensor", "import", "meter", "--public-key", public.hex(), "--type", key_type, "--json"
        ).stdout
    )
    assert (out["device"], out["public_key"]) == (hex_out(dev.device), hex_out(dev.public))
    assert out["private_key"] is False
    doc = _doc("meter")
    assert set(doc) == DOC_FIELDS - {"secret"}  # no private key here

    before = net.world.ledger.state.snapshot()
    one_line_error(run(*_register_args(net, "meter")), "needs_pop")
    printed = json.loads(ok(*_register_args(net, "meter"), "--pop-message", "--json").stdout)
    message = bytes.fromhex(printed["message"][2:])
    assert bytes.fromhex(printed["sha256"][2:]) == hashlib.sha256(message).digest()
    prefix = DEVICE.sig_prefix
    assert message.startswith(prefix)
    assert len(message) == len(prefix) + 32
    statement = message[len(prefix) :]
    # A signature of something else, or a high-S twin, is refused here, before anything is sent.
    wrong = dev.sign(DEVICE, bytes(32))
    one_line_error(run(*_register_args(net, "meter"), "--pop", wrong.hex()), "bad_signature")
    one_line_error(run(*_register_args(net, "meter"), "--pop", "00" * 63), "invalid_params")
    pop = dev.sign(DEVICE, statement)
    if key_type == "p256":
        s_ = int.from_bytes(pop[32:], "big")
        twin = pop[:32] + (P256_N - s_).to_bytes(32, "big")
        one_line_error(run(*_register_args(net, "meter"), "--pop", twin.hex()), "high_s")
    assert net.world.ledger.state.snapshot() == before
    ok(*_register_args(net, "meter"), "--pop", "0x" + pop.hex())
    record = net.world.device_record(dev)
    assert record is not None
    assert record.host == HOST.public
    record.body.verify_pop(net.world.id, net.owner.public)

    # Readings come from the device: push and simulate need the private key.
    push = ["--economy", net.economy, "--to", net.url, "--metric", "energy_wh", "--value", "1"]
    line = one_line_error(run("sensor", "push", "meter", *push), "no_private_key")
    assert "private key" in line
    sim = ["sensor", "simulate", "--economy", net.economy, "--to", net.url, "meter"]
    one_line_error(run(*sim, "--count", "1"), "no_private_key")
    assert not device_path("meter").with_suffix(".counter").exists()  # no counter used
    assert net.ingest.requests == []
    # It reads as a device everywhere else (audit, claim take its name).
    ok("sensor", "claim", "meter", "--economy", net.economy, "--owner", "owner")


def _pem(key: Any, fmt: Any = None) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        fmt or serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_files(home: Path) -> list[tuple[str, str, bytes, bool]]:
    """(label, key type, file bytes, holds a private key) in every format import takes."""
    ed = ed25519.Ed25519PrivateKey.generate()
    p2, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ok("sensor", "keygen", "made-elsewhere", "--type", "p256")
    made = device_path("made-elsewhere").read_bytes()
    der = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return [
        ("ed25519-pkcs8-pem", "ed25519", _pem(ed), True),
        ("ed25519-pkcs8-der", "ed25519", der, True),
        ("ed25519-spki-pem", "ed25519", _spki(ed), False),
        ("p256-pkcs8-pem", "p256", _pem(p2), True),
        (
            "p256-sec1-pem",
            "p256",
            _pem(other, serialization.PrivateFormat.TraditionalOpenSSL),
            True,
        ),
        ("p256-spki-pem", "p256", _spki(p2), False),
        ("mycelia-device-key", "p256", made, True),
    ]


def test_import_a_key_file_in_every_documented_format(net: Net) -> None:
    for i, (label, key_type, data, private) in enumerate(_key_files(net.home)):
        source = net.home / f"{label}.key"
        source.write_bytes(data)
        source.chmod(0o600)
        name = f"dev{i}"
        out = json.loads(ok("sensor", "import", name, "--key-file", str(source), "--json").stdout)
        assert (out["key_type"], out["private_key"]) == (key_type, private), label
        doc = _doc(name)
        assert set(doc) == (DOC_FIELDS if private else DOC_FIELDS - {"secret"}), label
        if not private:
            continue
        # The imported private key is the device: its readings verify under its public key.
        dev = load_device(name)
        assert hex_out(dev.public) == out["public_key"] == doc["public_key"], label
        net.fake.record(net.world.register(net.owner, dev, HOST))
        net.push(name, 5)
        ((signed, _, _),) = net.host.readings[dev.device]
        assert signed.verify(key_type, dev.public) == signed.id
    # The type, if given, must be the file's.
    source = net.home / "ed25519-pkcs8-pem.key"
    line = run("sensor", "import", "x", "--key-file", str(source), "--type", "p256")
    one_line_error(line, "key_type_mismatch")


def test_import_refusals_are_one_line_and_write_nothing(home: Path) -> None:
    def refused(reason: str, *args: str) -> None:
        one_line_error(run("sensor", "import", "meter", *args), reason)
        assert not device_path("meter").exists(), reason

    def key_file(name: str, data: bytes, mode: int = 0o600) -> str:
        path = home / name
        path.write_bytes(data)
        path.chmod(mode)
        return str(path)

    ed = ed25519.Ed25519PrivateKey.generate()
    refused("invalid_params")  # neither
    refused("invalid_params", "--public-key", "00" * 32)  # no --type
    refused("invalid_params", "--public-key", "zz", "--type", "ed25519")
    both = ["--public-key", "00" * 32, "--type", "ed25519", "--key-file", key_file("a", b"")]
    refused("invalid_params", *both)
    small_order = bytes([1]) + bytes(31)
    refused("bad_key", "--public-key", small_order.hex(), "--type", "ed25519")
    refused("bad_key", "--public-key", "00" * 31, "--type", "ed25519")
    refused("bad_key", "--public-key", "02" + "ff" * 32, "--type", "p256")  # x beyond p
    refused("bad_key", "--public-key", "04" + "01" * 64, "--type", "p256")  # not on the curve
    refused("key_file", "--key-file", str(home / "missing.pem"))
    refused("key_file", "--key-file", key_file("junk", b"not a key"))
    refused("key_file", "--key-file", key_file("wide", _pem(ed), 0o644))  # a private key, 0644
    encrypted = ed.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    refused("encrypted_key", "--key-file", key_file("enc", encrypted))
    p384 = _pem(ec.generate_private_key(ec.SECP384R1()))
    refused("unsupported_key", "--key-file", key_file("p384", p384))
    tampered = {"format": "mycelia-device-key/1", "key_type": "ed25519"}
    tampered |= {"public_key": "0x" + "00" * 32, "device": "0x" + "00" * 32}
    refused("key_file", "--key-file", key_file("bad.device", json.dumps(tampered).encode()))
    ok("sensor", "import", "meter", "--public-key", ed_public(ed).hex(), "--type", "ed25519")
    one_line_error(
        run("sensor", "import", "meter", "--key-file", key_file("k", _pem(ed))), "device_exists"
    )


def ed_public(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- simulation --------------------------------------------------------------------------------


def test_simulate_sends_batches_of_plausible_readings(net: Net) -> None:
    solar = net.device("sun")
    temp = net.device("air", "p256", metrics=(TEMPERATURE,), device_kind="wind-meter")
    result = ok(
        "sensor",
        "simulate",
        "--economy",
        net.economy,
        "--to",
        net.url,
        "sun",
        "air:temp",
        "--count",
        "4",
        "--rate",
        "50",
        "--speed",
        "180000",
        "--start-hour",
        "10",
    )
    assert "sent 8: accepted 8, refused 0" in result.stdout
    assert any(b[:1] != b"\x94" for _, b in net.ingest.requests)  # batches are arrays
    for dev, metric in ((solar, "energy_wh"), (temp, "temp_c")):
        got = [s for s in net.ingest.received if s.reading.device == dev.device]
        assert [s.reading.counter for s in got] == [1, 2, 3, 4]
        for s in got:
            s.verify(dev.key_type, dev.public)
            assert s.reading.metric == metric
    energy = [s.reading.value for s in net.ingest.received if s.reading.device == solar.device]
    assert all(2_000 <= e <= 5_000 for e in energy)  # an hour each (50/s × 180000), 10:00-14:00
    temps = [s.reading.value for s in net.ingest.received if s.reading.device == temp.device]
    assert all(120 <= t <= 250 for t in temps)  # tenths of °C

    net.ingest.refuse = {5: "clock_skew", 6: "clock_skew"}
    result = ok(
        "sensor",
        "simulate",
        "--economy",
        net.economy,
        "--to",
        net.url,
        "sun",
        "--count",
        "3",
        "--rate",
        "50",
        "--json",
    )
    assert json.loads(result.stdout) == {"sent": 3, "accepted": 1, "refused": {"clock_skew": 2}}
    net.ingest.refuse = {8: "clock_skew"}
    result = run(
        "sensor", "simulate", "--economy", net.economy, "--to", net.url, "sun", "--count", "1"
    )
    one_line_error(result, "clock_skew")


def test_the_simulated_sun_rises_and_sets() -> None:
    counters = iter(range(1, 1000))

    def sim() -> Simulator:
        dev = device_key(1)
        return Simulator(
            b"\x01" * 32,
            [("sun", dev, MODELS["solar"])],
            rate=1,
            speed=3600,  # an hour a reading
            start_hour=0,
            reserve=lambda name, n: next(counters),
            clock=lambda: 1_700_000_000_000,
        )

    day = [s.reading.value for s in sim().due(23)]
    assert len(day) == 24
    assert day[:7] == [0] * 7
    assert day[18:] == [0] * 6
    assert max(day) == max(day[11:14]) > 3_000  # noon
    clear_sky = 5_000 * 12 * 2 / 3.14159  # ∫ peak·sin over the day, in Wh
    assert 0.7 * clear_sky <= sum(day) <= clear_sky
    assert [s.reading.value for s in sim().due(23)] == day  # reproducible


# -- claims ------------------------------------------------------------------------------------


def test_claim_mints_floor_of_total_and_carries_the_rest(net: Net) -> None:
    dev = net.device("meter", "p256")
    net.push("meter", 700, 800)
    net.host.attest()
    net.push("meter", 650)
    net.host.attest()
    out = ok("sensor", "claim", "meter", "--economy", net.economy, "--owner", "owner").stdout
    assert "claimed counters 1..3 of meter (2 attestations): total 2150" in out
    assert "minted 0.002 TVS (2), carry 150" in out
    assert "certified" in out
    assert net.credits() == 2
    assert net.cursor(dev) == ClaimCursor(3, 150)

    out = ok("sensor", "claim", "meter", "--economy", net.economy, "--owner", "owner").stdout
    assert "nothing to claim" in out

    net.push("meter", 900)
    net.host.attest()
    plan = json.loads(
        ok(
            "sensor", "claim", "meter", "--economy", net.economy, "--owner", "owner", "--json"
        ).stdout
    )
    assert (plan["status"], plan["total"], plan["minted"], plan["carry"]) == (
        "certified",
        "900",
        "1",
        "50",
    )
    assert net.credits() == 3


def test_claim_takes_range_and_total_from_the_certificates_not_the_listing(net: Net) -> None:
    dev = net.device("meter")
    other = net.device("other")  # (the world's clock is behind entries the CLI signs)
    net.push("meter", 1_500)
    att = net.host.attest()
    lied = net.fake.answer(
        "sensor_claimable", {"economy": net.economy, "device": hex_out(dev.device)}
    )
    lied["attestations"][0].update(total="999999", first=0, last=99)
    net.fake.lie["sensor_claimable"] = lambda p: lied
    ok("sensor", "claim", "meter", "--economy", net.economy, "--owner", "owner")
    assert net.credits() == 1
    # A listing naming an attestation that has no row for the device.
    net.fake.lie["sensor_claimable"] = lambda p: {
        "cursor": -1,
        "carry": "0",
        "attestations": [
            {"id": hex_out(att.entry_id), "first": 1, "last": 1, "count": 1, "total": "1500"}
        ],
    }
    with client_for(net.fake) as client, pytest.raises(VerifyError) as err:
        client.prepare_claim(net.world.id, other.device)
    assert err.value.cause == "not_attested"


# -- audits ------------------------------------------------------------------------------------


@pytest.fixture
def audited(net: Net) -> tuple[Net, DeviceKey]:
    """Five readings of a P-256 meter: 1-3 and 4 in two attestations, 5 not attested."""
    dev = net.device("meter", "p256")
    net.push("meter", 100, 200, 300)
    net.host.attest()
    net.push("meter", 400)
    net.host.attest()
    net.push("meter", 500)
    net.fake.config = dataclasses.replace(net.fake.config, max_page=2)  # the audit pages
    return net, dev


def test_audit_verifies_every_reading_to_its_device_signature(
    audited: tuple[Net, DeviceKey],
) -> None:
    net, dev = audited
    out = ok("sensor", "audit", "meter", "--economy", net.economy).stdout
    assert "5 returned: 4 verified" in out
    assert "1 not attested yet, 0 failed" in out
    assert out.count("certificate verified") == 4  # 2 attestations, their registration
    assert "verified: 4 readings back to their device's signature" in out
    report = json.loads(
        ok(
            "sensor",
            "audit",
            hex_out(dev.device),
            "--economy",
            net.economy,
            "--json",
            "--first",
            "2",
            "--last",
            "4",
        ).stdout
    )
    assert report["ok"]
    assert (report["verified"], report["unattested"]) == (3, 0)
    assert [r["counter"] for r in report["readings"]] == [2, 3, 4]
    assert [(a["first"], a["last"], a["seen"]) for a in report["attestations"]] == [
        (1, 3, 2),
        (4, 4, 1),
    ]


def tamper(net: Net, change: Any) -> None:
    """The node relays readings with ``change(item)`` applied to each."""

    def lie(p: dict[str, Any]) -> Any:
        page = net.fake.answer("sensor_getReadings", p)
        for item in page["readings"]:
            change(item)
        return page

    net.fake.lie["sensor_getReadings"] = lie


def _flip_proof(item: dict[str, Any]) -> None:
    if (
        item["proof"] is not None
        and SignedReading.decode(bytes.fromhex(item["reading"][2:])).reading.counter == 2
    ):
        proof = MerkleProof.decode(bytes.fromhex(item["proof"][2:]))
        sibling = bytes([proof.siblings[0][0] ^ 1]) + proof.siblings[0][1:]
        item["proof"] = hex_out(
            MerkleProof(proof.index, proof.count, (sibling, *proof.siblings[1:])).encode()
        )


def test_audit_catches_a_tampered_proof(audited: tuple[Net, DeviceKey]) -> None:
    net, _ = audited
    tamper(net, _flip_proof)
    result = run("sensor", "audit", "meter", "--economy", net.economy)
    line = one_line_error(result, "bad_proof")
    assert "reading 2:" in line
    assert "does not lead to the root" in line
    assert "reading 2: FAILED bad_proof" in result.stdout


def test_audit_catches_a_forged_reading_and_a_withheld_one(
    audited: tuple[Net, DeviceKey],
) -> None:
    net, dev = audited

    def forge(item: dict[str, Any]) -> None:
        signed = SignedReading.decode(bytes.fromhex(item["reading"][2:]))
        r = signed.reading
        if r.counter == 3:  # more energy, the device's old signature
            more = Reading(r.economy, r.device, r.counter, r.ts_ms, r.metric, 301, r.exponent)
            item["reading"] = hex_out(SignedReading(more, signed.signature).encode())

    tamper(net, forge)
    one_line_error(run("sensor", "audit", "meter", "--economy", net.economy), "bad_signature")

    def withhold(p: dict[str, Any]) -> Any:
        page = net.fake.answer("sensor_getReadings", p)
        page["readings"] = [
            r
            for r in page["readings"]
            if SignedReading.decode(bytes.fromhex(r["reading"][2:])).reading.counter != 1
        ]
        return page

    net.fake.lie["sensor_getReadings"] = withhold
    line = one_line_error(run("sensor", "audit", "meter", "--economy", net.economy), "incomplete")
    assert "returned 2 of its 3 readings" in line
    # An attestation certificate that does not verify fails its readings.
    net.fake.lie.clear()

    def forged_cert(p: dict[str, Any]) -> Any:
        answer = net.fake.answer("sensor_getAttestation", p)
        cert = net.host.attestations[bytes.fromhex(p["id"][2:])]
        bad = cert.signatures[0][:1] + bytes([cert.signatures[0][1] ^ 1]) + cert.signatures[0][2:]
        answer["certificate"] = hex_out(
            dataclasses.replace(cert, signatures=(bad, *cert.signatures[1:])).encode()
        )
        return answer

    net.fake.lie["sensor_getAttestation"] = forged_cert
    report = json.loads(
        run("sensor", "audit", hex_out(dev.device), "--economy", net.economy, "--json").stdout
    )
    assert not report["ok"]
    assert {a["reason"] for a in report["attestations"]} == {"bad_signature"}
    assert {r["reason"] for r in report["readings"] if r["status"] == "failed"} == {
        "unverified_attestation"
    }


async def test_the_async_client_audits_and_claims_the_same(
    audited: tuple[Net, DeviceKey],
) -> None:
    net, dev = audited
    endpoint = Endpoint("http://127.0.0.1:8645", None, COOKIE)
    with client_for(net.fake) as sync_client:
        want = sync_client.audit(net.world.id, dev.device)
        want_plan = sync_client.prepare_claim(net.world.id, dev.device)

    def handle(request: httpx.Request) -> httpx.Response:
        status, content = net.fake.http(request.content, request.headers.get("authorization"))
        return httpx.Response(status, content=content)

    async with AsyncClient(endpoint, transport=httpx.MockTransport(handle)) as client:
        assert await client.audit(net.world.id, dev.device) == want
        plan = await client.prepare_claim(net.world.id, dev.device)
        devices = await client.sensor_devices(net.world.id)
    assert plan == want_plan
    assert plan is not None
    assert (plan.body.first_counter, plan.body.last_counter, plan.body.total) == (1, 4, 1000)
    assert (plan.minted, plan.carry) == (1, 0)
    assert [(d.device, d.readings, d.last_accepted, d.last_attested) for d in devices] == [
        (dev.device, 5, 5, 4)
    ]
    assert want.ok
