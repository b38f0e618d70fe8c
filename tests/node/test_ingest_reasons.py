"""The ingest's reasons cannot drift: ``docs/sensors.md`` ("Ingest
reasons") lists exactly :data:`ingest.READING_REASONS` and
:data:`ingest.BODY_REFUSALS`, and ``node/ingest.py`` names no reason
outside them (the protocol's part, ``sensors.READING_REASONS``, is checked
by a property test in ``tests/protocol/test_sensors.py``; each reason is
produced over HTTP in ``tests/node/test_sensors.py``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from mycelia.node import ingest
from mycelia.node.ingest import BODY_REFUSALS, READING_REASONS

ROOT = Path(__file__).resolve().parents[2]


def docs_table() -> list[tuple[str, str]]:
    """``(reason, where)`` of each row of the "Ingest reasons" table."""
    text = (ROOT / "docs" / "sensors.md").read_text()
    section = text.split("### Ingest reasons\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "no table under Ingest reasons"
    out = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        m = re.fullmatch(r"`([a-z_]+)`", cells[0])
        assert m, row
        out.append((m.group(1), cells[1]))
    return out


def test_the_docs_list_exactly_the_reasons_the_ingest_gives() -> None:
    rows = docs_table()
    assert len(rows) == len(set(rows)), "a reason is listed twice"
    documented_readings = {reason for reason, where in rows if where == "reading"}
    documented_bodies = {(int(where), reason) for reason, where in rows if where != "reading"}
    assert documented_readings == READING_REASONS
    assert documented_bodies == BODY_REFUSALS


def _reasons_named_in(source: str, namespace: dict[str, Any]) -> dict[str, set[Any]]:
    """The reasons ``_BodyError``, ``Result`` and ``Refused`` are built with
    in ``source``, where they are constants (not a variable passed on)."""
    found: dict[str, set[Any]] = {"_BodyError": set(), "Result": set(), "Refused": set()}

    def value(node: ast.expr) -> Any:
        try:
            return eval(compile(ast.Expression(node), "<ingest>", "eval"), namespace)
        except NameError:  # a variable: what it carries is checked where it is made
            return None

    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        name = node.func.id
        if name == "_BodyError" and len(node.args) >= 2:
            status, reason = value(node.args[0]), value(node.args[1])
            if status is not None:
                found[name].add((status, reason))
        elif name == "Result":
            for kw in node.keywords:
                if kw.arg == "reason" and (reason := value(kw.value)) is not None:
                    found[name].add(reason)
        elif name == "Refused" and node.args and (reason := value(node.args[0])) is not None:
            found[name].add(reason.value)
    return found


def test_the_ingest_code_names_no_reason_it_does_not_export() -> None:
    source = Path(ingest.__file__).read_text()
    found = _reasons_named_in(source, vars(ingest))
    # The connection cap answers from the shared HTTP gate (rpc.http_refusal),
    # before any request reaches the ingest's handlers.
    assert found["_BodyError"] | {(503, ingest.TOO_MANY_CONNECTIONS)} == BODY_REFUSALS
    # ingest_gate's answer to a connection over the cap is a Result too.
    assert found["Result"]
    assert found["Result"] - {ingest.TOO_MANY_CONNECTIONS} <= READING_REASONS
    assert found["Refused"]
    assert found["Refused"] <= READING_REASONS
