"""Who may import whom, beyond the protocol's own rules: nothing outside
``tests/`` imports ``tests``, and test support (``mycelia.testing``)
reaches production code only through ``mycelia devnet``, the one command
that is a test network. Read from the source, so an import inside a
function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The folders of the distribution's packages, and the benchmarks.
PACKAGES = ("protocol", "node", "cli", "testing")
#: The only production module that may use mycelia.testing.
DEVNET = Path("cli/devnet.py")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (relative imports resolved to ``mycelia.*``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = "mycelia." + path.relative_to(ROOT).parts[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                out.add(f"{base}.{node.module}" if node.module else base)
            else:
                assert node.module is not None
                out.add(node.module)
    return out


def sources(*folders: str) -> list[Path]:
    found = [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]
    assert found
    return found


def test_nothing_outside_tests_imports_tests() -> None:
    for path in sources(*PACKAGES, "bench"):
        bad = sorted(m for m in imports(path) if m == "tests" or m.startswith("tests."))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_the_devnet_uses_test_support_in_production_code() -> None:
    users = {
        path.relative_to(ROOT)
        for path in sources("protocol", "node", "cli")
        if any(m.startswith("mycelia.testing") for m in imports(path))
    }
    assert users == {DEVNET}


def test_deterministic_economies_need_only_the_protocol() -> None:
    mine = {m for m in imports(ROOT / "testing" / "economies.py") if m.startswith("mycelia.")}
    assert mine
    assert all(m.startswith("mycelia.protocol") for m in mine), mine
