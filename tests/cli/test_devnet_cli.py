"""What ``make run`` prints must work when pasted into a new terminal, where
``.venv/bin`` is not on ``PATH``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mycelia.cli.devnet import command_as_typed


def test_the_venv_path_is_printed_when_mycelia_is_not_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a terminal without the venv
    exe = Path(sys.executable).parent / "mycelia"
    assert exe.exists()  # the test runs from the installed venv
    assert command_as_typed() == str(exe)


def test_the_bare_name_when_path_finds_this_mycelia(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert command_as_typed() == "mycelia"
