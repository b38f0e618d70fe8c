"""The API's declarations type both ends (docs/architecture.md, "Types"):
mypy holds a record field's annotation to its codec, an omitted member's
to allow None, a handler's return to its method's result, and what a
declaration reads back to its result type.

These are promises of the annotations (``member`` typed by its codec,
``MethodSpec[T]``), not of any code that runs, so the test is mypy itself:
on a module that keeps each promise once and breaks it once, it must
report exactly the lines marked ``# E: <code>``. Should ``member`` or a
declaration fall back to ``Any``, the broken lines pass and this fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import mypy.api
import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = """\
from dataclasses import dataclass

from mycelia.api import methods as declared
from mycelia.api import types
from mycelia.api.codecs import Record, member
from mycelia.api.scalars import ID, NAT, text
from mycelia.node.jsonrpc import Registry

TEXT = text()


@dataclass(frozen=True, slots=True, kw_only=True)
class Kept(Record):
    id: bytes = member(ID)
    count: int = member(NAT, default=0)
    note: str | None = member(TEXT, omit=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Broken(Record):
    id: str = member(ID)  # E: assignment
    count: int = member(NAT, default="0")  # E: misc
    note: str = member(TEXT, omit=True)  # E: assignment


registry = Registry()


@registry.implement(declared.NODE_PEERS)
async def peers(context: object, session: object) -> tuple[types.Peer, ...]:
    return ()


@registry.implement(declared.NODE_PEERS)  # E: arg-type
async def peers_as_a_list(context: object, session: object) -> list[types.Peer]:
    return []


info: types.NodeInfo = declared.NODE_INFO.result.load({}, "")
not_info: types.Peer = declared.NODE_INFO.result.load({}, "")  # E: assignment
"""

_ERROR = re.compile(r"^snippet\.py:(\d+): error: .*\[([a-z-]+)\]$")


def _marked(source: str) -> set[tuple[int, str]]:
    """(line, error code) of every line marked ``# E: <code>``."""
    out = set()
    for n, line in enumerate(source.splitlines(), 1):
        _, mark, code = line.partition("# E: ")
        if mark:
            out.add((n, code.strip()))
    return out


def test_mypy_holds_fields_handlers_and_answers_to_their_declarations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tree make typecheck builds (see the Makefile): mycelia.* spelled out.
    tree = tmp_path / "tree"
    (tree / "mycelia").mkdir(parents=True)
    for package in ("protocol", "api", "node"):
        (tree / "mycelia" / package).symlink_to(ROOT / package)
    (tree / "trio").symlink_to(Path(trio.__file__).parent)
    (tree / "snippet.py").write_text(SNIPPET)
    monkeypatch.chdir(tree)
    report, errors, _status = mypy.api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            "--hide-error-context",
            "snippet.py",
        ]
    )
    assert errors == ""
    found = set()
    for line in report.splitlines():
        m = _ERROR.match(line)
        if m is not None:
            found.add((int(m.group(1)), m.group(2)))
        else:
            assert " note: " in line, line  # nothing but the marked errors and their notes
    assert len(_marked(SNIPPET)) == 5
    assert found == _marked(SNIPPET), report
