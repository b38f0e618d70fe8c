"""A wallet installs the client without the daemon: ``mycelia.client`` (and
``mycelia.api``) import none of the node, and everything they load comes
from the base distribution's dependencies, not from the ``node`` extra."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: What a wallet must never pull in.
DAEMON = ("mycelia.node", "mycelia.cli", "libp2p", "lmdb", "hypercorn", "starlette")
#: The modules the ``node`` extra brings (httpx imports click and rich when
#: they happen to be installed, for its own command line: a base install
#: has neither, so the probe hides them as a base install would).
EXTRA_MODULES = (*DAEMON, "prometheus_client", "click", "rich", "pygments")
#: A fresh interpreter without the node extra: its modules cannot be imported.
_BASE_INSTALL = f"""
import importlib.abc, sys
class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in {EXTRA_MODULES!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""
#: What a wallet does: read a node's answer with the client.
_WALLET = """
import httpx
from mycelia.client import Client, Endpoint
did = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
info = {"did": did, "peer_id": "p", "version": "v", "addresses": [], "validator": False,
        "economies": [], "pending": 0, "sync_lag": 0}
def answer(request):
    body = __import__("json").loads(request.content)
    return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": info})
with Client(Endpoint("http://node", None, None), transport=httpx.MockTransport(answer)) as c:
    assert c.node_info().did == did
"""


def _name(requirement: str) -> str:
    """``"libp2p==0.8.1"`` -> ``"libp2p"`` (normalised as PEP 503 says)."""
    raw = re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", raw).lower()


def _project() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]


def _loaded_by(code: str) -> list[str]:
    """The modules a fresh interpreter without the node extra holds after
    running ``code``."""
    probe = f"{_BASE_INSTALL}\n{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def _closure(names: set[str]) -> set[str]:
    """``names`` and every distribution they require, as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo.extend(_name(r) for r in requires if "extra ==" not in r)
    return seen


def test_the_client_imports_none_of_the_daemon() -> None:
    for code in (
        "import mycelia.client",
        "import mycelia.api",
        "from mycelia.client import AsyncClient, Client, Ingest, keyfile",
        _WALLET,
    ):
        loaded = _loaded_by(code)
        daemon = [m for m in loaded if any(m == d or m.startswith(d + ".") for d in DAEMON)]
        assert not daemon, f"{code!r} loaded {daemon}"


def test_the_client_needs_only_the_base_dependencies() -> None:
    project = _project()
    base = {_name(r) for r in project["dependencies"]}
    node = {_name(r) for r in project["optional-dependencies"]["node"]}
    assert not base & node
    assert {"libp2p", "lmdb", "hypercorn", "starlette", "prometheus-client"} <= node
    allowed = _closure(base) | {"mycelia"}
    providers = importlib.metadata.packages_distributions()
    loaded = _loaded_by(_WALLET)
    used = {
        _name(dist)
        for module in loaded
        for dist in providers.get(module.split(".")[0], [])
        if module.split(".")[0] not in sys.stdlib_module_names
        and module != "_distutils_hack"  # setuptools' hook in site-packages, not an import
    }
    assert used - allowed == set(), f"the client needs more than the base install: {used - allowed}"
    assert not used & node


def test_the_probe_is_a_base_install() -> None:
    # Without the node extra the daemon cannot even be imported: the probe
    # above would have caught the client needing it.
    probe = f"{_BASE_INSTALL}\nimport mycelia.node.rpc"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode != 0
    assert "ModuleNotFoundError" in run.stderr
