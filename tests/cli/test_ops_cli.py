"""The operations commands: ``backup``, ``restore``, ``key show|export|import``
and ``doctor``, through click's CliRunner against real datadirs and stores.

Each refusal is checked to be one ``error: <code>: ...`` line that changed
nothing. A store "held by a running node" is a :class:`Store` left open in
this process while the command runs in another (py-lmdb opens an
environment once per process)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import lmdb
import pytest
from click.testing import Result

from mycelia.cli.backup import store_facts
from mycelia.cli.doctor import FAIL, OK, WARN, check_cgroup, check_time_sync
from mycelia.client.keyfile import key_info, read_key
from mycelia.node.config import load_config
from mycelia.node.store import SCHEMA_VERSION, Store
from mycelia.testing.processes import mycelia
from tests.cli.conftest import ok, one_line_error, run
from tests.cli.fakenode import FakeNode, serve

PASS = "an export passphrase"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(path: Path) -> dict[str, str]:
    """Every file under ``path`` and its checksum: "nothing changed" made
    checkable. Not ``lock.mdb``: LMDB's table of readers, which any reader
    writes."""
    return {
        str(p.relative_to(path)): sha(p)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "lock.mdb"
    }


def put(store_dir: Path, db: str, key: bytes, value: bytes) -> None:
    """Write one raw record, as the node would have (a lock, a vote, a schema)."""
    env = lmdb.open(str(store_dir), max_dbs=64, subdir=True)
    try:
        handle = env.open_db(db.encode())
        with env.begin(write=True) as txn:
            txn.put(key, value, db=handle)
    finally:
        env.close()


@pytest.fixture
def node(home: Path) -> Path:
    """A datadir (tmp/node, as $MYCELIA_NODE__DATADIR says) with a key and a
    store holding one validator lock."""
    ok("init", "--datadir", str(home / "node"))
    Store(home / "node" / "store", map_size_mb=4).close()
    put(home / "node" / "store", "locks", b"r" * 32, b"e" * 32)
    return home / "node"


def pass_file(home: Path, text: str = PASS) -> Path:
    path = home / "pass"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


# -- backup -------------------------------------------------------------------------------


def test_backup_copies_the_store_while_it_is_open(node: Path, home: Path) -> None:
    running = Store(node / "store", map_size_mb=4)  # the node holds it open
    try:
        # Another process, as beside a running node (LMDB: one open per process).
        done = mycelia("backup", str(home / "bk"))
    finally:
        running.close()
    assert done.returncode == 0, done.stderr
    manifest = json.loads((home / "bk" / "manifest.json").read_text())
    assert manifest["format"] == 1
    assert manifest["schema"] == SCHEMA_VERSION
    assert manifest["did"] == key_info(node / "node.key").did
    assert manifest["tables"]["locks"] == 1
    assert manifest["tables"]["meta"] == 1
    copy = home / "bk" / "store" / "data.mdb"
    assert manifest["files"] == {
        "store/data.mdb": {"sha256": sha(copy), "bytes": copy.stat().st_size}
    }
    assert store_facts(home / "bk" / "store").locks == {b"r" * 32: b"e" * 32}
    assert not (home / "bk" / "node.key").exists()
    assert "key        not included" in done.stdout


def test_backup_include_key_is_private(node: Path, home: Path) -> None:
    ok("backup", str(home / "bk"), "--include-key")
    copied = home / "bk" / "node.key"
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
    assert copied.read_bytes() == (node / "node.key").read_bytes()
    manifest = json.loads((home / "bk" / "manifest.json").read_text())
    assert manifest["files"]["node.key"]["sha256"] == sha(copied)


def test_backup_refuses_a_non_empty_target(node: Path, home: Path) -> None:
    (home / "bk").mkdir()
    (home / "bk" / "something").write_text("mine")
    one_line_error(run("backup", str(home / "bk")), "backup_exists")
    assert tree(home / "bk") == {"something": sha(home / "bk" / "something")}


def test_backup_refuses_without_a_store(home: Path) -> None:
    ok("init", "--datadir", str(home / "node"))
    one_line_error(run("backup", str(home / "bk")), "no_store")
    assert not (home / "bk").exists()


# -- restore ------------------------------------------------------------------------------


def other_datadir(home: Path, name: str = "new") -> list[str]:
    return ["--set", f"node.datadir={home / name}"]


def test_restore_into_an_empty_datadir_brings_store_and_key(node: Path, home: Path) -> None:
    ok("backup", str(home / "bk"), "--include-key")
    result = ok(*other_datadir(home), "restore", str(home / "bk"))
    restored = home / "new"
    assert read_key(restored / "node.key").did == read_key(node / "node.key").did
    assert stat.S_IMODE((restored / "node.key").stat().st_mode) == 0o600
    assert store_facts(restored / "store").locks == {b"r" * 32: b"e" * 32}
    # A validator (the default) is told the double-vote rule.
    assert "must not vote" in result.stdout
    # The restored store opens as the node would open it.
    Store(restored / "store", map_size_mb=4).close()


def test_restore_refuses_to_replace_a_store_without_force(node: Path, home: Path) -> None:
    ok("backup", str(home / "bk"))
    before = tree(node)
    one_line_error(run("restore", str(home / "bk")), "store_exists")
    assert tree(node) == before


def test_restore_force_keeps_the_replaced_store(node: Path, home: Path) -> None:
    ok("backup", str(home / "bk"))
    old = sha(node / "store" / "data.mdb")
    result = ok("restore", str(home / "bk"), "--force")
    aside = [p for p in node.iterdir() if p.name.startswith("store.before-restore-")]
    assert len(aside) == 1
    assert sha(aside[0] / "data.mdb") == old
    assert f"previous   moved to {aside[0]}" in result.stdout


def test_restore_refuses_to_forget_votes_unless_told(node: Path, home: Path) -> None:
    ok("backup", str(home / "bk"))
    # After the backup, the validator locked another slot and voted.
    put(node / "store", "locks", b"s" * 32, b"f" * 32)
    put(node / "store", "votes", b"f" * 32, b"a vote")
    before = tree(node)
    line = one_line_error(run("restore", str(home / "bk"), "--force"), "restore_loses_votes")
    assert "lacks 2 validator locks or votes" in line
    assert tree(node) == before
    ok("restore", str(home / "bk"), "--force", "--i-know")
    assert store_facts(node / "store").locks == {b"r" * 32: b"e" * 32}


def test_restore_refuses_while_the_node_runs(node: Path, home: Path) -> None:
    ok("backup", str(home / "bk"))
    with serve(FakeNode(), node):
        before = tree(node)
        one_line_error(run("restore", str(home / "bk"), "--force"), "node_running")
        assert tree(node) == before


def test_restore_refuses_a_newer_schema(node: Path, home: Path) -> None:
    ok("backup", str(home / "bk"))
    manifest_path = home / "bk" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["schema"] = SCHEMA_VERSION + 1
    manifest_path.write_text(json.dumps(manifest))
    line = one_line_error(
        run(*other_datadir(home), "restore", str(home / "bk")), "backup_schema_newer"
    )
    assert f"schema {SCHEMA_VERSION + 1}" in line
    assert not (home / "new").exists()


def test_restore_refuses_a_corrupt_copy(node: Path, home: Path) -> None:
    ok("backup", str(home / "bk"))
    copy = home / "bk" / "store" / "data.mdb"
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    one_line_error(run(*other_datadir(home), "restore", str(home / "bk")), "backup_corrupt")
    assert not (home / "new").exists()


def test_restore_refuses_what_is_not_a_backup(node: Path, home: Path) -> None:
    (home / "bk").mkdir()
    one_line_error(run(*other_datadir(home), "restore", str(home / "bk")), "not_a_backup")
    (home / "bk" / "manifest.json").write_text("[1, 2]")
    one_line_error(run(*other_datadir(home), "restore", str(home / "bk")), "not_a_backup")
    assert not (home / "new").exists()


def test_restore_refuses_another_nodes_backup(node: Path, home: Path) -> None:
    ok("backup", str(home / "bk"))
    ok("init", "--datadir", str(home / "new"))  # a different key
    before = tree(home / "new")
    one_line_error(run(*other_datadir(home), "restore", str(home / "bk")), "key_mismatch")
    assert tree(home / "new") == before


# -- key ----------------------------------------------------------------------------------


def test_key_show(node: Path) -> None:
    did = key_info(node / "node.key").did
    assert ok("key", "show", "--did").stdout.strip() == did
    assert "(not encrypted)" in ok("key", "show").stdout


def test_key_export_is_encrypted_and_import_brings_it_back(node: Path, home: Path) -> None:
    secret = pass_file(home)
    exported = home / "exported.key"
    ok("key", "export", str(exported), "--passphrase-file", str(secret))
    assert key_info(exported).encrypted
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    original = read_key(node / "node.key")
    assert read_key(exported, PASS.encode()).did == original.did

    ok(*other_datadir(home), "key", "import", str(exported), "--passphrase-file", str(secret))
    imported = home / "new" / "node.key"
    assert read_key(imported).seed == original.seed
    assert stat.S_IMODE(imported.stat().st_mode) == 0o600


def test_key_export_asks_for_the_passphrase_twice(node: Path, home: Path) -> None:
    exported = home / "exported.key"
    ok("key", "export", str(exported), input=f"{PASS}\n{PASS}\n")
    assert read_key(exported, PASS.encode()).did == key_info(node / "node.key").did


def test_key_export_refuses_an_existing_file(node: Path, home: Path) -> None:
    target = home / "exported.key"
    target.write_text("keep me")
    secret = pass_file(home)
    one_line_error(
        run("key", "export", str(target), "--passphrase-file", str(secret)), "key_exists"
    )
    assert target.read_text() == "keep me"


def test_key_import_refuses_to_replace_a_key(node: Path, home: Path) -> None:
    secret = pass_file(home)
    exported = home / "exported.key"
    ok("key", "export", str(exported), "--passphrase-file", str(secret))
    before = sha(node / "node.key")
    one_line_error(
        run("key", "import", str(exported), "--passphrase-file", str(secret)), "key_exists"
    )
    assert sha(node / "node.key") == before


def test_key_import_with_a_wrong_passphrase_writes_nothing(node: Path, home: Path) -> None:
    exported = home / "exported.key"
    ok("key", "export", str(exported), "--passphrase-file", str(pass_file(home)))
    wrong = pass_file(home, "not the passphrase")
    result = run(
        *other_datadir(home), "key", "import", str(exported), "--passphrase-file", str(wrong)
    )
    assert result.exit_code != 0
    assert result.stderr.strip().startswith("error: cannot decrypt")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (home / "new" / "node.key").exists()


# -- doctor -------------------------------------------------------------------------------


def doctor(*args: str) -> tuple[Result, dict[str, dict[str, str]]]:
    result = run(*args, "doctor", "--json")
    body = json.loads(result.stdout)
    checks = {c["name"]: c for c in body["checks"]}
    rank = {OK: 0, WARN: 1, FAIL: 2}
    assert body["worst"] == max((c["verdict"] for c in checks.values()), key=rank.__getitem__)
    assert result.exit_code == rank[body["worst"]]
    return result, checks


def test_doctor_on_a_healthy_datadir(node: Path) -> None:
    result, checks = doctor()
    for name in ("key", "store_schema", "store_map", "disk"):
        assert checks[name]["verdict"] == OK, checks[name]
        assert checks[name]["advice"] == ""
    assert checks["store_schema"]["detail"] == f"schema {SCHEMA_VERSION}"
    # No node answers here: a warning that says so, not a failure.
    assert checks["ports"]["verdict"] == WARN
    assert result.exit_code in (0, 1)


def test_doctor_fails_a_key_others_can_read(node: Path) -> None:
    os.chmod(node / "node.key", 0o644)
    result, checks = doctor()
    assert checks["key"]["verdict"] == FAIL
    assert checks["key"]["advice"] == f"chmod 600 {node / 'node.key'}"
    assert result.exit_code == 2


def test_doctor_fails_a_store_of_a_newer_schema(node: Path) -> None:
    put(node / "store", "meta", b"schema", str(SCHEMA_VERSION + 1).encode())
    before = tree(node)
    result, checks = doctor()
    assert checks["store_schema"]["verdict"] == FAIL
    assert f"schema {SCHEMA_VERSION + 1} is newer" in checks["store_schema"]["detail"]
    assert result.exit_code == 2
    assert tree(node) == before  # doctor reads, never migrates


def test_doctor_warns_of_an_older_schema(node: Path) -> None:
    put(node / "store", "meta", b"schema", str(SCHEMA_VERSION - 1).encode())
    _, checks = doctor()
    assert checks["store_schema"]["verdict"] == WARN
    assert "migrates it" in checks["store_schema"]["detail"]


def test_doctor_fails_a_map_nearly_full(node: Path) -> None:
    # About 0.95 MiB of data against a 1 MiB bound.
    env = lmdb.open(str(node / "store"), max_dbs=64, subdir=True, map_size=8 << 20)
    db = env.open_db(b"readings")
    with env.begin(write=True) as txn:
        for i in range(240):
            txn.put(i.to_bytes(8, "big"), os.urandom(4000), db=db)
    env.close()
    settings = ["--set", "store.map_size_mb=1", "--set", "store.max_map_size_mb=1"]
    result, checks = doctor(*settings)
    assert checks["store_map"]["verdict"] == FAIL
    assert "store.max_map_size_mb 1 " in checks["store_map"]["detail"]
    assert result.exit_code == 2
    _, roomy = doctor()  # the default bound has room for it
    assert roomy["store_map"]["verdict"] == OK


def test_doctor_checks_where_the_running_node_listens(node: Path) -> None:
    fake = FakeNode()
    with serve(fake, node):
        _, checks = doctor()
    assert checks["rpc_bind"]["verdict"] == OK
    assert checks["p2p_listen"]["verdict"] == OK
    assert "/ip4/127.0.0.1/tcp/4101" in checks["p2p_listen"]["detail"]


def test_doctor_fails_an_rpc_open_beyond_loopback(node: Path) -> None:
    fake = FakeNode()
    open_rpc = {**fake.answer("node_info", {}), "rpc": ["http://0.0.0.0:8645"]}
    fake.lie["node_info"] = lambda p: open_rpc
    with serve(fake, node):
        result, checks = doctor("--set", "rpc.auth=false")
    assert checks["rpc_bind"]["verdict"] == FAIL
    assert "http://0.0.0.0:8645" in checks["rpc_bind"]["detail"]
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("answers", "verdict", "words"),
    [
        ({"timedatectl": "yes\n"}, OK, "NTP synchronized"),
        ({"timedatectl": "no\n"}, WARN, "not NTP synchronized"),
        ({"chronyc": "Leap status     : Normal\n"}, OK, "chrony: synchronized"),
        ({"chronyc": "Leap status     : Not synchronised\n"}, WARN, "chrony: not"),
        ({}, WARN, "unknown"),
    ],
)
def test_doctor_time_sync(answers: dict[str, str], verdict: str, words: str) -> None:
    check = check_time_sync(lambda argv: answers.get(argv[0]))
    assert check.verdict == verdict
    assert words in check.detail


def test_doctor_fails_a_store_lmdb_cannot_open(node: Path) -> None:
    (node / "store" / "data.mdb").write_bytes(b"not an lmdb file" * 512)
    (node / "store" / "lock.mdb").unlink()
    result, checks = doctor()
    assert checks["store_schema"]["verdict"] == FAIL
    assert "store_unreadable" in checks["store_schema"]["detail"]
    assert result.exit_code == 2


@pytest.mark.parametrize(("metering", "verdict"), [("auto", WARN), ("cgroup", FAIL)])
def test_doctor_cgroup_without_delegation(tmp_path: Path, metering: str, verdict: str) -> None:
    overrides = {
        "compute.enabled": "true",
        "compute.cgroup": str(tmp_path / "not-a-cgroup"),
        "compute.metering": metering,
    }
    check = check_cgroup(load_config(None, overrides=overrides, env={}))
    assert check.verdict == verdict
    assert "not a cgroup v2 directory" in check.detail
    assert "Delegate=yes" in check.advice


def test_doctor_cgroup_is_fine_with_compute_off(tmp_path: Path) -> None:
    overrides = {"compute.cgroup": str(tmp_path / "not-a-cgroup")}
    check = check_cgroup(load_config(None, overrides=overrides, env={}))
    assert check.verdict == OK
    assert check.detail.startswith("compute off")
