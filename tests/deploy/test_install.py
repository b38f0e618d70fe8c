"""deploy/install.sh run for real against a temporary root: every path
redirected (--prefix, --datadir, --confdir, --unitdir), no apt, no systemd,
the service user being whoever runs the tests, and the virtualenv standing
in for PREFIX (--no-pip: the test's own interpreter is the installed code).

What is tested here is what the script decides: the key is created once and
never again, the store and the operator's config survive a second run, the
unit gets this install's paths, --uninstall keeps data and --purge asks.
The real pip and apt steps run in `make check-install` (docs/install.md).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mycelia.client.keyfile import key_info
from mycelia.node.config import load_config
from mycelia.node.store import Store

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "install.sh"


@dataclass(frozen=True, slots=True)
class Root:
    base: Path
    prefix: Path
    datadir: Path
    confdir: Path
    unitdir: Path

    @property
    def key(self) -> Path:
        return self.datadir / "node.key"

    @property
    def config(self) -> Path:
        return self.confdir / "mycelia.toml"

    @property
    def unit(self) -> Path:
        return self.unitdir / "mycelia.service"


def _prefix(prefix: Path) -> None:
    """PREFIX/bin/{mycelia,python}: this test run's interpreter and code."""
    bin_dir = prefix / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    mycelia = bin_dir / "mycelia"
    mycelia.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mycelia.cli "$@"\n')
    for script in (python, mycelia):
        script.chmod(0o755)


@pytest.fixture
def root(tmp_path: Path) -> Root:
    r = Root(
        base=tmp_path,
        prefix=tmp_path / "opt" / "mycelia",
        datadir=tmp_path / "var" / "lib" / "mycelia",
        confdir=tmp_path / "etc" / "mycelia",
        unitdir=tmp_path / "etc" / "systemd" / "system",
    )
    _prefix(r.prefix)
    return r


def install(
    r: Root, *extra: str, input: str | None = None, pip: bool = False
) -> subprocess.CompletedProcess[str]:
    args = [
        "bash",
        str(INSTALL),
        "--no-apt",
        "--no-systemd",
        "--user",
        getpass.getuser(),
        "--prefix",
        str(r.prefix),
        "--datadir",
        str(r.datadir),
        "--confdir",
        str(r.confdir),
        "--unitdir",
        str(r.unitdir),
        *([] if pip else ["--no-pip"]),
        *extra,
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(r.base / "home"),
        "LANG": "C.UTF-8",
    }
    return subprocess.run(
        args, capture_output=True, text=True, input=input, env=env, timeout=120, check=False
    )


def ok(r: Root, *extra: str, input: str | None = None) -> str:
    done = install(r, *extra, input=input)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def refused(done: subprocess.CompletedProcess[str], words: str) -> None:
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), done.stderr
    assert words in lines[-1], lines[-1]
    assert "Traceback" not in done.stderr


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_install_creates_key_config_and_unit(root: Root) -> None:
    out = ok(root, "--profile", "pi")
    assert stat.S_IMODE(root.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(root.datadir.stat().st_mode) == 0o700
    did = key_info(root.key).did
    assert f"node identity  {did}" in out
    cfg = load_config(root.config, env={})
    assert cfg.node.datadir == root.datadir
    assert cfg.node.key_file == root.key
    assert cfg.p2p.mdns  # the Raspberry Pi profile
    assert "p2p listen     /ip4/0.0.0.0/tcp/4101" in out
    unit = root.unit.read_text()
    assert f"ExecStart={root.prefix}/bin/mycelia --config {root.config}" in unit
    assert f"--set node.datadir={root.datadir} node run" in unit
    assert f"User={getpass.getuser()}" in unit
    # Not /var/lib/mycelia: the StateDirectory is replaced by this datadir.
    assert "StateDirectory=" not in unit
    assert f"ReadWritePaths={root.datadir}" in unit
    for default in ("/opt/mycelia", "/etc/mycelia", "/var/lib/mycelia"):
        assert re.search(rf"(?<![\w-]){default}", unit) is None, default


def test_server_profile_starts_with_a_plain_key(root: Root) -> None:
    ok(root, "--profile", "server")
    cfg = load_config(root.config, env={})
    # The profile's passphrase credential needs setting up by hand first.
    assert cfg.node.passphrase_file is None
    assert "# passphrase_file = " in root.config.read_text()
    assert cfg.store.max_map_size_mb == 16384  # the server profile
    assert not key_info(root.key).encrypted


def test_second_run_is_an_upgrade_that_keeps_key_store_and_config(root: Root) -> None:
    ok(root, "--profile", "pi")
    key_before = root.key.read_bytes()
    store = Store(root.datadir / "store", map_size_mb=4)
    store.close()
    store_before = sha(root.datadir / "store" / "data.mdb")
    with root.config.open("a") as fh:
        fh.write("# the operator's own note\n")
    config_before = root.config.read_text()

    out = ok(root, "--profile", "pi")
    assert root.key.read_bytes() == key_before
    assert f"kept the node key {root.key}" in out
    assert sha(root.datadir / "store" / "data.mdb") == store_before
    assert root.config.read_text() == config_before
    # The profile of this version is left beside the operator's config.
    dist = root.confdir / "mycelia.toml.dist"
    assert "# the operator's own note" not in dist.read_text()
    assert f'datadir = "{root.datadir}"' in dist.read_text()


def test_uninstall_keeps_data_and_config(root: Root) -> None:
    ok(root)
    key = root.key.read_bytes()
    out = ok(root, "--uninstall")
    assert not root.prefix.exists()
    assert not root.unit.exists()
    assert root.key.read_bytes() == key
    assert root.config.is_file()
    assert "kept:" in out


def test_purge_asks_and_keeps_everything_without_a_yes(root: Root) -> None:
    ok(root)
    key = root.key.read_bytes()
    for answer in ("", "no\n", "yes\n"):
        refused(install(root, "--purge", input=answer), "not confirmed; nothing was removed")
        assert root.key.read_bytes() == key
        assert root.config.is_file()
        assert root.prefix.is_dir()


def test_purge_removes_data_once_confirmed(root: Root) -> None:
    ok(root)
    out = ok(root, "--purge", input="purge\n")
    assert 'type "purge" to confirm' in out
    assert not root.datadir.exists()
    assert not root.confdir.exists()
    assert not root.prefix.exists()


def test_purge_yes_needs_no_answer(root: Root) -> None:
    ok(root)
    ok(root, "--purge", "--yes", input="")
    assert not root.datadir.exists()
    assert not root.confdir.exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--frobnicate",), "unknown option: --frobnicate"),
        (("--profile", "desktop"), "--profile must be pi, server or auto"),
        (("--datadir", "relative/dir"), "paths must be absolute: relative/dir"),
        (("--confdir", "/"), "refusing / as a path"),
        (("--source", "/nonexistent"), "/nonexistent is not a mycelia source tree"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(
    root: Root, args: tuple[str, ...], words: str
) -> None:
    refused(install(root, *args), words)
    assert not root.datadir.exists()
    assert not root.confdir.exists()
    assert not root.unitdir.exists()


def test_no_pip_needs_an_existing_virtualenv(root: Root) -> None:
    shutil.rmtree(root.prefix)
    refused(install(root), f"{root.prefix}/bin/mycelia is missing")
    assert not root.key.exists()


def test_shellcheck_is_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed here (apt-get install shellcheck)")
    scripts = [str(INSTALL), str(REPO / "deploy" / "check-install.sh")]
    done = subprocess.run(
        [shellcheck, *scripts], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout
