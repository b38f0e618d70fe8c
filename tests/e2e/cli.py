"""The ``mycelia`` command as the end-to-end tests run it: a subprocess
with extra environment, which must succeed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "mycelia.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, f"mycelia {' '.join(map(str, args))}:\n{r.stdout}\n{r.stderr}"
    return r
