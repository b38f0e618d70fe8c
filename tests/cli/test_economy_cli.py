"""``mycelia economy`` and ``mycelia status`` against FakeNodes served over
real sockets: the genesis ceremony across validator nodes, listings, and
the stewards' entries."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from mycelia.api.encoding import hex_in, hex_out
from mycelia.protocol import Economy, SigningKey
from mycelia.protocol.economy import IssuedPolicy, MutualCreditPolicy
from mycelia.testing.economies import World, genesis, key, validator_keys
from tests.cli.conftest import new_wallet, ok, one_line_error, run
from tests.cli.fakenode import FakeError, FakeNode, serve

BOB = key(2)


@pytest.fixture
def validators(home: Path) -> Iterator[tuple[list[FakeNode], list[str], FakeNode]]:
    """Three validator nodes (two named by datadir, one as URL#COOKIEFILE)
    and the steward's own node, found through the configured datadir."""
    fakes = [FakeNode(node_key=key(i, "node")) for i in range(3)]
    own = FakeNode(node_key=key(9, "node"))
    with ExitStack() as stack:
        specs = []
        for i, fake in enumerate(fakes):
            d = stack.enter_context(serve(fake, home / f"v{i}", unix=i != 2))
            if i == 2:
                url = json.loads((d / "rpc.endpoint").read_text())["http"]
                specs.append(f"{url}#{d / '.cookie'}")
            else:
                specs.append(str(d))
        stack.enter_context(serve(own, home / "node"))
        yield fakes, specs, own


def create_args(specs: list[str], *extra: str) -> list[str]:
    args = ["economy", "create", "--name", "Valley Hours", "--symbol", "VH", *extra]
    for spec in specs:
        args += ["--validator", spec]
    return args


def test_create_runs_the_genesis_ceremony(
    home: Path, validators: tuple[list[FakeNode], list[str], FakeNode]
) -> None:
    fakes, specs, own = validators
    steward = new_wallet(home, "stew")
    extra = f"--membership approved --steward stew --steward {BOB.did} --default-limit 500"
    result = ok(*create_args(specs, *extra.split()))
    economy_id = hex_in(result.stdout.strip(), "id", size=32)
    for fake in [*fakes, own]:
        (signed,) = fake.created
        assert signed.genesis.id == economy_id
    economy = Economy.from_signed(own.created[0])  # a quorum of the validators signed
    g = economy.genesis
    assert (g.name, g.symbol, g.decimals, g.kind) == ("Valley Hours", "VH", 2, "mutual_credit")
    assert g.quorum == 3  # the smallest more than two thirds of 3
    assert [v.key for v in g.validators] == [f.key.public for f in fakes]
    assert g.policy == MutualCreditPolicy("approved", (steward.public, BOB.public), 500)
    assert len(own.created[0].signatures) == 3
    assert "economy_signGenesis" not in own.methods()  # the steward's node is not a validator
    assert result.stderr == ""  # the status line is transient


def test_create_on_a_validator_that_is_also_your_node(
    home: Path, validators: tuple[list[FakeNode], list[str], FakeNode]
) -> None:
    fakes, specs, own = validators
    ok("--set", f"node.datadir={home / 'v0'}", *create_args(specs))
    # Created once on each validator, the steward's own among them.
    assert [len(f.created) for f in fakes] == [1, 1, 1]
    assert own.created == []
    assert fakes[0].methods().count("economy_create") == 1


def test_create_issued(home: Path, validators: tuple[list[FakeNode], list[str], FakeNode]) -> None:
    fakes, specs, _ = validators
    issuer = new_wallet(home, "mint")
    ok(*create_args(specs, *f"--kind issued --issuer mint:1000000 --issuer {BOB.did}:5".split()))
    policy = fakes[0].created[0].genesis.policy
    assert policy == IssuedPolicy("open", (), ((issuer.public, 1_000_000), (BOB.public, 5)))


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--kind", "issued"], "invalid_params"),  # no issuer
        (["--issuer", f"{BOB.did}:5"], "invalid_params"),  # issuers are for issued
        (["--default-limit", "-1"], "invalid_params"),
        (["--membership", "approved"], "bad_genesis"),  # no steward
        (["--quorum", "9"], "bad_genesis"),
        (["--steward", "did:key:z6MkBogus"], "bad_key"),
    ],
)
def test_create_refuses_a_bad_genesis_before_signing(
    validators: tuple[list[FakeNode], list[str], FakeNode], extra: list[str], reason: str
) -> None:
    fakes, specs, own = validators
    one_line_error(run(*create_args(specs, *extra)), reason)
    for fake in [*fakes, own]:
        assert set(fake.methods()) <= {"node_info"}


def test_create_names_the_validator_that_fails(
    validators: tuple[list[FakeNode], list[str], FakeNode],
) -> None:
    fakes, specs, own = validators

    def refuse(params: dict[str, object]) -> object:
        raise FakeError(-32004, "not_validator", "this node's key is not a validator")

    fakes[1].lie["economy_signGenesis"] = refuse
    line = one_line_error(run(*create_args(specs)), "not_validator")
    assert f"validator {specs[1]}:" in line
    assert all(f.created == [] for f in [*fakes, own])


def test_create_with_an_unreachable_validator_signs_nothing(
    home: Path, validators: tuple[list[FakeNode], list[str], FakeNode]
) -> None:
    fakes, specs, _ = validators
    (home / "stopped").mkdir()
    line = one_line_error(run(*create_args([*specs, str(home / "stopped")])), "node_not_running")
    assert "validator " + str(home / "stopped") in line
    assert all("economy_signGenesis" not in f.methods() for f in fakes)


def test_create_with_the_same_node_twice(
    validators: tuple[list[FakeNode], list[str], FakeNode],
) -> None:
    _, specs, _ = validators
    one_line_error(run(*create_args([*specs, specs[0]])), "invalid_params")


# -- reading, following -------------------------------------------------------------------------


@pytest.fixture
def node(home: Path) -> Iterator[tuple[FakeNode, World, SigningKey]]:
    """A node following an approved-membership economy whose steward is the
    wallet 'stew'."""
    stew = new_wallet(home, "stew")
    vkeys = validator_keys(4)
    world = World(genesis(validators=vkeys, membership="approved", stewards=[stew]), vkeys)
    fake = FakeNode(world)
    with serve(fake, home / "node"):
        yield fake, world, stew


def test_list_and_show(node: tuple[FakeNode, World, SigningKey]) -> None:
    fake, world, stew = node
    (item,) = json.loads(ok("economy", "list", "--json").stdout)
    assert item["id"] == hex_out(world.id)
    assert item["certificates"] == 0
    assert item["validators"] == [k.did for k in world.vkeys]
    assert hex_out(world.id) in ok("economy", "list").stdout
    doc = json.loads(ok("economy", "show", hex_out(world.id), "--json").stdout)
    assert doc["stewards"] == [stew.did]
    assert doc["membership"] == "approved"
    assert doc["genesis"] == hex_out(fake.signed[world.id].encode())
    text = ok("economy", "show", world.id.hex()).stdout  # bare hex works too
    assert "Test Valley Hours" in text
    assert stew.did in text
    assert "verified" in text
    one_line_error(run("economy", "show", "ab" * 32), "unknown_economy")


def test_follow(node: tuple[FakeNode, World, SigningKey]) -> None:
    fake, world, _ = node
    assert "already known" in ok("economy", "follow", hex_out(world.id)).stdout
    assert "fetched from peers" in ok("economy", "follow", "cd" * 32).stdout
    assert fake.followed == [world.id, bytes.fromhex("cd" * 32)]


def test_admit_and_set_credit(node: tuple[FakeNode, World, SigningKey]) -> None:
    _, world, _ = node
    eid = hex_out(world.id)
    result = ok("economy", "admit", "--economy", eid, "--steward", "stew", "--member", BOB.did)
    assert "certified: admitted " + BOB.did in result.stdout
    assert world.ledger.account(BOB.public).admitted
    result = ok(
        *f"economy set-credit --economy {eid} --steward stew --member {BOB.did}".split(),
        "--limit",
        "2500",
    )
    assert "set to 25.00 TVH" in result.stdout
    assert world.ledger.account(BOB.public).limit(0) == 2500
    line = one_line_error(
        run("economy", "admit", "--economy", eid, "--steward", "stew", "--member", BOB.did),
        "already_member",
    )
    assert BOB.did in line or "already" in line


def test_admit_by_a_non_steward_is_refused(
    home: Path, node: tuple[FakeNode, World, SigningKey]
) -> None:
    _, world, _ = node
    new_wallet(home, "nobody")
    eid = hex_out(world.id)
    result = run(*f"economy admit --economy {eid} --steward nobody --member {BOB.did}".split())
    one_line_error(result, "not_steward")


# -- status -------------------------------------------------------------------------------------


def test_status(node: tuple[FakeNode, World, SigningKey]) -> None:
    fake, world, _ = node
    text = ok("status").stdout
    expected = [fake.key.did, "12D3KooWFake", "/ip4/127.0.0.1/tcp/4101", "validator"]
    # Every address the node listens on, from node_info.
    expected += ["http://127.0.0.1:8645", "http://127.0.0.1:9464/metrics"]
    for item in [*expected, "Test Valley Hours", hex_out(world.id)]:
        assert item in text
    assert re.search(r"ingest\s+off", text)
    assert "votes in 0 of 1 economies" in text  # its key is not this economy's validator
    assert fake.methods() == ["node_info", "node_peers", "economy_list"]
    assert len(fake.raw) == 1  # one batch
    doc = json.loads(ok("status", "--json").stdout)
    assert set(doc) == {"node", "peers", "economies", "sensors", "forks"}
    assert doc["sensors"] == {}  # no impact economy: sensor_devices is not asked
    assert doc["forks"] == {}  # no economy counts forks: economy_forks is not asked
    assert doc["node"]["did"] == fake.key.did
    assert doc["node"]["sync_lag"] == 0
    assert doc["node"]["metrics"] == "http://127.0.0.1:9464/metrics"
    assert (doc["node"]["rpc"], doc["node"]["ingest"]) == (["http://127.0.0.1:8645"], None)
    assert doc["peers"] == ["12D3KooWPeerOne", "12D3KooWPeerTwo"]
    assert [e["id"] for e in doc["economies"]] == [hex_out(world.id)]


def test_status_shows_the_metering_tier_and_why(node: tuple[FakeNode, World, SigningKey]) -> None:
    """The metering tier is chosen at start; status says which and why."""
    fake, _, _ = node
    assert re.search(
        r"compute\s+off \(runs no jobs for others\); 0 jobs relayed", ok("status").stdout
    )
    fake.compute_info = {
        "enabled": True,
        "runtimes": ["primes", "words"],
        "metering": "shim",
        "metering_why": "no writable cgroup v2 delegated to the node",
        "running": 2,
    }
    text = ok("status").stdout
    assert "provider of primes, words; metering: shim" in text
    assert "no writable cgroup v2" in text
    assert "2 jobs running" in text
    doc = json.loads(ok("status", "--json").stdout)
    assert doc["node"]["compute"]["metering"] == "shim"


def test_status_errors_are_one_line(node: tuple[FakeNode, World, SigningKey], home: Path) -> None:
    fake, _, _ = node

    def broken(params: dict[str, object]) -> object:
        raise FakeError(-32004, "not_ready", "still starting")

    fake.lie["node_peers"] = broken
    assert one_line_error(run("status"), "not_ready") == "error: not_ready: still starting"
    cookie = home / "other.cookie"
    cookie.write_text("__cookie__:" + "01" * 32)
    one_line_error(run("status", "--cookie", str(cookie)), "unauthorized")
    one_line_error(run("status", "--rpc", "unix:" + str(home / "none.sock")), "node_not_running")
