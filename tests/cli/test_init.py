"""``mycelia init`` and the CLI's global options, through click's CliRunner."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mycelia.cli.main import cli, load, node
from mycelia.client.keyfile import KeyFileError, key_info, read_key
from mycelia.node.config import load_config

PASS = "a long and private passphrase"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    # Keep the real home and any MYCELIA_* variables out of the tests.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in list(os.environ):
        if var.startswith("MYCELIA_"):
            monkeypatch.delenv(var)
    return CliRunner()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_init_creates_key_and_config(runner: CliRunner, tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    result = runner.invoke(cli, ["init", "--datadir", str(datadir)])
    assert result.exit_code == 0, result.output
    key_path = datadir / "node.key"
    config_path = datadir / "mycelia.toml"
    assert mode(datadir) == 0o700
    assert mode(key_path) == 0o600
    key = read_key(key_path)
    assert key.did in result.stdout
    assert str(key_path) in result.stdout
    assert str(config_path) in result.stdout
    cfg = load_config(config_path, env={})
    assert cfg.node.datadir == datadir
    assert cfg.node.key_file == key_path
    assert cfg.node.passphrase_file is None
    assert "# " in config_path.read_text()  # commented


def test_second_init_refuses(runner: CliRunner, tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    assert runner.invoke(cli, ["init", "--datadir", str(datadir)]).exit_code == 0
    before = (datadir / "node.key").read_bytes()
    result = runner.invoke(cli, ["init", "--datadir", str(datadir)])
    line = one_line_error(result)
    assert "already exists" in line
    assert "node.key" in line
    assert (datadir / "node.key").read_bytes() == before


def test_init_encrypt_with_passphrase_file(runner: CliRunner, tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    pass_file = tmp_path / "pass"
    fd = os.open(pass_file, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, PASS.encode() + b"\n")
    os.close(fd)
    result = runner.invoke(
        cli, ["init", "--datadir", str(datadir), "--encrypt", "--passphrase-file", str(pass_file)]
    )
    assert result.exit_code == 0, result.output
    key_path = datadir / "node.key"
    assert mode(key_path) == 0o600
    assert key_info(key_path).encrypted
    assert PASS not in result.output
    with pytest.raises(KeyFileError, match="passphrase is needed"):
        read_key(key_path)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        read_key(key_path, b"not it")
    key = read_key(key_path, PASS.encode())
    assert key.did in result.stdout
    # The written config points the node at the same passphrase file.
    cfg = load_config(datadir / "mycelia.toml", env={})
    assert cfg.node.passphrase_file == pass_file


def test_init_encrypt_prompts_twice(runner: CliRunner, tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    result = runner.invoke(
        cli, ["init", "--datadir", str(datadir), "--encrypt"], input=f"{PASS}\n{PASS}\n"
    )
    assert result.exit_code == 0, result.output
    assert PASS not in result.output  # hidden input
    assert read_key(datadir / "node.key", PASS.encode()).did in result.stdout
    assert "node.passphrase_file" in result.stdout  # tells the operator what to set


def test_init_refuses_loose_passphrase_file(runner: CliRunner, tmp_path: Path) -> None:
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASS)
    pass_file.chmod(0o644)
    datadir = tmp_path / "data"
    result = runner.invoke(
        cli, ["init", "--datadir", str(datadir), "--encrypt", "--passphrase-file", str(pass_file)]
    )
    line = one_line_error(result)
    assert "readable by others (mode 0644)" in line
    assert PASS not in result.output
    assert not (datadir / "node.key").exists()


def test_init_writes_config_to_explicit_path(runner: CliRunner, tmp_path: Path) -> None:
    config_path = tmp_path / "etc" / "node.toml"
    config_path.parent.mkdir()
    datadir = tmp_path / "data"
    result = runner.invoke(cli, ["--config", str(config_path), "init", "--datadir", str(datadir)])
    assert result.exit_code == 0, result.output
    assert load_config(config_path, env={}).node.datadir == datadir
    assert not (datadir / "mycelia.toml").exists()


def test_bad_set_and_bad_env_are_one_line_errors(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datadir = str(tmp_path / "data")
    line = one_line_error(
        runner.invoke(cli, ["--set", "p2p.lisen=x", "init", "--datadir", datadir])
    )
    assert "unknown key p2p.lisen" in line
    assert "p2p.listen" in line
    line = one_line_error(runner.invoke(cli, ["--set", "nonsense", "init", "--datadir", datadir]))
    assert "expected section.key=value" in line
    monkeypatch.setenv("MYCELIA_METRICS__PORT", "http")
    line = one_line_error(runner.invoke(cli, ["init", "--datadir", datadir]))
    assert "metrics.port: expected an integer 0..65535, got 'http'" in line
    assert not (tmp_path / "data").exists()


def test_load_helper_precedence(runner: CliRunner, tmp_path: Path) -> None:
    config_path = tmp_path / "m.toml"
    config_path.write_text("[metrics]\nport = 1000\n[sync]\nbatch = 10\n")
    seen = {}

    @node.command("probe")
    @click.pass_context
    def probe(ctx: click.Context) -> None:
        seen["cfg"] = load(ctx)
        assert load(ctx) is seen["cfg"]  # loaded once

    try:
        result = runner.invoke(
            cli,
            ["--config", str(config_path), "--set", "metrics.port=3000", "node", "probe"],
            env={"MYCELIA_METRICS__PORT": "2000", "MYCELIA_SYNC__BATCH": "20"},
        )
        assert result.exit_code == 0, result.output
        cfg = seen["cfg"]
        assert cfg.metrics.port == 3000
        assert cfg.sync.batch == 20
        assert cfg.source == config_path

        result = runner.invoke(cli, ["--config", str(tmp_path / "missing.toml"), "node", "probe"])
        assert "config file not found" in one_line_error(result)
    finally:
        node.commands.pop("probe")


def test_load_helper_reads_default_config(runner: CliRunner, tmp_path: Path) -> None:
    # After a plain `mycelia init`, other commands find its config without --config.
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    default_dir = tmp_path / "home" / ".local/share/mycelia"
    assert (default_dir / "node.key").exists()
    seen = {}

    @node.command("probe")
    @click.pass_context
    def probe(ctx: click.Context) -> None:
        seen["cfg"] = load(ctx)

    try:
        assert runner.invoke(cli, ["node", "probe"]).exit_code == 0
        assert seen["cfg"].source == default_dir / "mycelia.toml"
    finally:
        node.commands.pop("probe")


def test_python_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mycelia.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "init" in out.stdout
    assert "node" in out.stdout
