"""Shared fixtures for the CLI commands that talk to a node: a clean
environment (home, wallet folder, no MYCELIA_* from the caller) and helpers
to read CliRunner results."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mycelia.cli.main import cli
from mycelia.client.keyfile import read_key
from mycelia.protocol import SigningKey


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh $HOME and wallet folder; the node's datadir is tmp/node."""
    for var in list(os.environ):
        if var.startswith("MYCELIA_") or var == "XDG_CONFIG_HOME":
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MYCELIA_WALLET_DIR", str(tmp_path / "wallets"))
    monkeypatch.setenv("MYCELIA_NODE__DATADIR", str(tmp_path / "node"))
    return tmp_path


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input)


def ok(*args: str, input: str | None = None) -> Result:
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def one_line_error(result: Result, reason: str) -> str:
    """The result is a failure shown as exactly one ``error: <reason>: ...`` line."""
    assert result.exit_code != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {reason}: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def new_wallet(home: Path, name: str) -> SigningKey:
    ok("wallet", "new", name)
    return read_key(home / "wallets" / f"{name}.key")
