"""``mycelia wallet``: key files, and payments through a FakeNode served over
a real unix socket found through the configured datadir."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mycelia.api.encoding import hex_in, hex_out
from mycelia.api.types import CertifiedEntry
from mycelia.cli.wallet import format_amount, wallet_dir
from mycelia.client.keyfile import key_info, read_key
from mycelia.protocol import Entry, SignedEntry, SigningKey, keys
from mycelia.testing.economies import World, key
from tests.cli.conftest import new_wallet, ok, one_line_error, run
from tests.cli.fakenode import FakeError, FakeNode, serve

BOB = key(2)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- key files -------------------------------------------------------------------------------


def test_wallet_dir_precedence(tmp_path: Path) -> None:
    home = str(tmp_path)
    assert wallet_dir({"HOME": home}) == tmp_path / ".config/mycelia/wallets"
    assert wallet_dir({"HOME": home, "XDG_CONFIG_HOME": "/x"}) == Path("/x/mycelia/wallets")
    # XDG says a relative XDG_CONFIG_HOME is invalid and to be ignored.
    assert (
        wallet_dir({"HOME": home, "XDG_CONFIG_HOME": "rel"}) == tmp_path / ".config/mycelia/wallets"
    )
    env = {"HOME": home, "XDG_CONFIG_HOME": "/x", "MYCELIA_WALLET_DIR": "/w"}
    assert wallet_dir(env) == Path("/w")


def test_wallet_new_writes_a_private_key_file(home: Path) -> None:
    result = ok("wallet", "new", "alice")
    path = home / "wallets" / "alice.key"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    key = read_key(path)
    assert key.did in result.stdout
    assert str(path) in result.stdout
    assert key.seed.hex() not in result.output
    # Apart from any node key: nothing was written into the node's datadir.
    assert not (home / "node").exists()


def test_wallet_new_in_the_xdg_config_dir(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MYCELIA_WALLET_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    ok("wallet", "new", "alice")
    assert mode(home / "xdg" / "mycelia" / "wallets" / "alice.key") == 0o600


def test_wallet_new_refuses_to_overwrite_and_bad_names(home: Path) -> None:
    key = new_wallet(home, "alice")
    one_line_error(run("wallet", "new", "alice"), "wallet_exists")
    assert read_key(home / "wallets" / "alice.key").public == key.public
    for bad in ("../evil", "a/b", ".hidden", ""):
        one_line_error(run("wallet", "new", bad), "bad_wallet_name")
    assert sorted(p.name for p in (home / "wallets").iterdir()) == ["alice.key"]


def test_wallet_list_and_show(home: Path) -> None:
    alice = new_wallet(home, "alice")
    bob = new_wallet(home, "bob")
    items = json.loads(ok("wallet", "list", "--json").stdout)
    assert items == [
        {
            "name": "alice",
            "did": alice.did,
            "encrypted": False,
            "path": str(home / "wallets/alice.key"),
        },
        {"name": "bob", "did": bob.did, "encrypted": False, "path": str(home / "wallets/bob.key")},
    ]
    assert json.loads(ok("wallet", "show", "bob", "--json").stdout)["did"] == bob.did
    text = ok("wallet", "list").stdout
    assert "alice" in text
    assert alice.did in text
    one_line_error(run("wallet", "show", "carol"), "unknown_wallet")


def test_encrypted_wallet_asks_for_its_passphrase(home: Path) -> None:
    ok("wallet", "new", "alice", "--encrypt", input="pass phrase\npass phrase\n")
    path = home / "wallets" / "alice.key"
    assert key_info(path).encrypted
    alice = read_key(path, b"pass phrase")
    world = World()
    fake = FakeNode(world)
    with serve(fake, home / "node"):
        args = f"wallet send alice --economy {hex_out(world.id)} --to {BOB.did} --amount 5"
        result = run(*args.split(), input="wrong\n")
        one_line_error(result, "wallet_file")
        assert fake.raw == []
        ok(*args.split(), input="pass phrase\n")
    assert world.balance(alice) == -5


# -- through a node ------------------------------------------------------------------------------


@pytest.fixture
def node(home: Path) -> Iterator[tuple[FakeNode, World, SigningKey]]:
    """A node following one open mutual-credit economy (limit 1000), and a
    wallet 'alice'."""
    alice = new_wallet(home, "alice")
    world = World()
    fake = FakeNode(world)
    fake.record(world.transfer(BOB, alice, 300, "welcome"))
    with serve(fake, home / "node"):
        yield fake, world, alice


def send(world: World, *extra: str) -> list[str]:
    return ["wallet", "send", "alice", "--economy", hex_out(world.id), *extra]


def test_send_waits_for_the_certificate(node: tuple[FakeNode, World, SigningKey]) -> None:
    fake, world, alice = node
    result = ok(*send(world, "--to", BOB.did, "--amount", "1200", "--memo", "rent"))
    lines = result.stdout.splitlines()
    entry_id = hex_in(lines[0], "id", size=32)
    assert lines[1].startswith("certified: sent 12.00 TVH (1200) to " + BOB.did)
    assert fake.statuses[entry_id]["status"] == "certified"
    (body,) = [b for b in fake.bodies if b["method"] == "entry_submit"]
    entry = Entry.decode(hex_in(body["params"]["entry"], "entry"))
    assert entry.id == entry_id
    assert entry.body.memo == "rent"
    assert entry.author == alice.public
    SignedEntry(entry, hex_in(body["params"]["signature"], "sig")).verify()
    assert all(alice.seed.hex() not in raw.decode() for raw in fake.raw)
    assert world.balance(alice) == -900


def test_send_costs_three_calls_and_verifies_only_the_awaited_certificate(
    node: tuple[FakeNode, World, SigningKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before its wait a send makes at most 3 RPC calls (no entry_get of the
    head: account_get carries ts_ms), and the wallet verifies no signature but
    the economy's genesis and the one certificate it waits for."""
    fake, world, _ = node
    wallet_checks: list[str] = []
    real = keys.crypto_sign_open

    def counting(*args: bytes) -> bytes:
        # the fake node answers on its own threads; only the wallet's count
        if threading.current_thread() is threading.main_thread():
            wallet_checks.append(fake.methods()[-1])
        return real(*args)

    monkeypatch.setattr(keys, "crypto_sign_open", counting)
    before = len(fake.methods())
    ok(*send(world, "--to", BOB.did, "--amount", "5"))
    calls = fake.methods()[before:]
    waited = calls.index("entry_get")
    assert waited <= 3, calls
    assert calls[waited - 1] == "entry_submit"
    genesis_sigs = len(world.vkeys)  # World's genesis is signed by all its validators
    votes = len(fake.certs[world.id][-1].signatures)
    assert wallet_checks.count("economy_get") == genesis_sigs
    assert len(wallet_checks) == genesis_sigs + 1 + votes, wallet_checks


def test_send_to_a_wallet_name(node: tuple[FakeNode, World, SigningKey], home: Path) -> None:
    _, world, _ = node
    carol = new_wallet(home, "carol")
    ok(*send(world, "--to", "carol", "--amount", "7"))
    assert world.balance(carol) == 7


def test_send_no_wait_prints_the_id_only(node: tuple[FakeNode, World, SigningKey]) -> None:
    fake, world, _ = node
    fake.hold = True
    result = ok(*send(world, "--to", BOB.did, "--amount", "1", "--no-wait"))
    (line,) = result.stdout.splitlines()
    assert fake.statuses[hex_in(line, "id", size=32)]["status"] == "pending"
    assert "entry_get" not in fake.methods()[-1:]


def test_send_refused_is_one_line(node: tuple[FakeNode, World, SigningKey]) -> None:
    fake, world, alice = node
    result = run(*send(world, "--to", BOB.did, "--amount", "1301"))
    line = one_line_error(result, "insufficient_balance")
    assert "below the limit" in line
    entry_id = hex_in(result.stdout.strip(), "id", size=32)  # the id, to look it up later
    assert fake.statuses[entry_id]["status"] == "refused"
    assert world.balance(alice) == 300


def test_send_timeout_is_one_line(node: tuple[FakeNode, World, SigningKey]) -> None:
    fake, world, _ = node
    fake.hold = True
    result = run(*send(world, "--to", BOB.did, "--amount", "1", "--timeout", "0.2"))
    line = one_line_error(result, "timeout")
    assert result.stdout.strip() in line


def test_send_rpc_refusal_is_one_line(node: tuple[FakeNode, World, SigningKey]) -> None:
    fake, world, _ = node

    def refuse(params: dict[str, object]) -> object:
        raise FakeError(-32004, "not_ready", "the node is still syncing")

    fake.lie["entry_submit"] = refuse
    line = one_line_error(run(*send(world, "--to", BOB.did, "--amount", "1")), "not_ready")
    assert line == "error: not_ready: the node is still syncing"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--to", BOB.did, "--amount", "1.5"], "invalid_params"),
        (["--to", BOB.did, "--amount", "0"], "invalid_params"),
        (["--to", BOB.did, "--amount", "-3"], "invalid_params"),
        (["--to", "did:key:zBogus", "--amount", "1"], "bad_key"),
        (["--to", "nobody", "--amount", "1"], "unknown_wallet"),
    ],
)
def test_send_bad_input_is_one_line_and_sends_nothing(
    node: tuple[FakeNode, World, SigningKey], args: list[str], reason: str
) -> None:
    fake, world, _ = node
    one_line_error(run(*send(world, *args)), reason)
    assert fake.raw == []


def test_bad_economy_id(node: tuple[FakeNode, World, SigningKey]) -> None:
    fake, _, _ = node
    result = run("wallet", "balance", "alice", "--economy", "0x1234")
    one_line_error(result, "invalid_params")
    assert fake.raw == []


def test_node_not_running(home: Path) -> None:
    new_wallet(home, "alice")
    (home / "node").mkdir()
    result = run("wallet", "balance", "alice", "--economy", "ab" * 32)
    line = one_line_error(result, "node_not_running")
    assert str(home / "node" / "rpc.endpoint") in line


def test_wrong_cookie(node: tuple[FakeNode, World, SigningKey], home: Path) -> None:
    _, world, _ = node
    stale = home / "stale.cookie"
    stale.write_text("__cookie__:" + "00" * 32)
    result = run(
        "wallet", "balance", "alice", "--economy", hex_out(world.id), "--cookie", str(stale)
    )
    one_line_error(result, "unauthorized")


def test_balance(node: tuple[FakeNode, World, SigningKey]) -> None:
    _, world, alice = node
    ok(*send(world, "--to", BOB.did, "--amount", "1205"))
    doc = json.loads(
        ok("wallet", "balance", "alice", "--economy", hex_out(world.id), "--json").stdout
    )
    assert doc == {
        "economy": hex_out(world.id),
        "symbol": "TVH",
        "decimals": 2,
        "account": alice.did,
        "balance": "-905",
        "limit": "1000",
        "seq": 1,
        "head": doc["head"],
        "member": True,
        "minted": "0",
        "burned": "0",
        "ts_ms": world.ledger.account(alice.public).ts_ms,
    }
    assert doc["ts_ms"] > 0
    text = ok("wallet", "balance", "alice", "--economy", hex_out(world.id)).stdout
    assert "-9.05 TVH" in text
    assert "10.00 TVH" in text


def test_history(node: tuple[FakeNode, World, SigningKey]) -> None:
    _, world, alice = node
    ok(*send(world, "--to", BOB.did, "--amount", "25", "--memo", "tea"))
    eid = hex_out(world.id)
    doc = json.loads(ok("wallet", "history", "alice", "--economy", eid, "--json").stdout)
    assert [(e["kind"], e["body"]["amount"], e["author"]) for e in doc["entries"]] == [
        ("transfer", "25", alice.did),
        ("transfer", "300", BOB.did),
    ]
    assert doc["next_cursor"] is None
    page = json.loads(
        ok("wallet", "history", "alice", "--economy", eid, "--json", "--limit", "1").stdout
    )
    assert len(page["entries"]) == 1
    assert page["next_cursor"] == "1"
    text = ok("wallet", "history", "alice", "--economy", eid).stdout
    assert "-0.25" in text
    assert "3.00" in text
    assert "tea" in text
    assert "welcome" in text


def test_history_with_a_forged_certificate_fails(node: tuple[FakeNode, World, SigningKey]) -> None:
    fake, world, alice = node
    cert = world.transfer(alice, BOB, 3)
    forged = CertifiedEntry.of_certificate(cert).to_json()
    forged["certificate"] = forged["certificate"][:-2] + (
        "00" if forged["certificate"][-2:] != "00" else "01"
    )
    fake.lie["account_history"] = lambda p: {"entries": [forged], "next_cursor": None}
    result = run("wallet", "history", "alice", "--economy", hex_out(world.id))
    line = one_line_error(result, "verification_failed")
    assert "bad_signature" in line
    assert result.stdout == ""


def test_format_amount() -> None:
    assert format_amount(-1505, 2) == "-15.05"
    assert format_amount(5, 3) == "0.005"
    assert format_amount(42, 0) == "42"
