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


# -- the devnet's compute provider ----------------------------------------------------------


def test_the_providers_runtimes_load_through_the_config_loader() -> None:
    from mycelia.cli.devnet import DEMO_JOBS, RUNTIME_PRICES, compute_sets, job_user
    from mycelia.node.config import load_config

    sets = compute_sets("/usr/bin/python3")
    overrides = dict(s.split("=", 1) for s in sets)
    cfg = load_config(None, overrides=overrides).compute
    assert cfg.enabled
    assert cfg.user == job_user()
    assert [rt.name for rt in cfg.runtimes] == list(RUNTIME_PRICES)
    for rt in cfg.runtimes:
        terms = RUNTIME_PRICES[rt.name]
        assert rt.command == ("/usr/bin/python3", "-I", "-S", str(DEMO_JOBS), rt.name)
        assert (rt.fee, rt.per_cpu_ms, rt.per_wall_s, rt.per_mib_s) == tuple(
            terms[k] for k in ("fee", "per_cpu_ms", "per_wall_s", "per_mib_s")
        )
        assert rt.max_wall_s == terms["max_wall_s"]


def test_the_job_user_can_run_the_demo_jobs() -> None:
    import subprocess

    from mycelia.cli.devnet import DEMO_JOBS, job_python

    python = job_python()
    if python is None:
        pytest.skip("this machine has no interpreter the job user may execute")
    r = subprocess.run(
        [python, "-I", "-S", str(DEMO_JOBS), "words"],
        input=b"b a B c b",
        capture_output=True,
        check=True,
    )
    assert r.stdout.decode().splitlines() == ["3 b", "1 a", "1 c"]


def test_the_demo_jobs_count_and_refuse(capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from mycelia.cli import demo_jobs

    def main(args: list[str], data: bytes) -> tuple[int, str, str]:
        stdin = io.TextIOWrapper(io.BytesIO(data))
        real = sys.stdin
        sys.stdin = stdin
        try:
            code = demo_jobs.main(args)
        finally:
            sys.stdin = real
        out, err = capsys.readouterr()
        return code, out, err

    by_division = [k for k in range(2, 1000) if all(k % d for d in range(2, k))]
    assert main(["primes"], b"1000\n") == (0, f"{len(by_division)} primes below 1000\n", "")
    assert main(["primes"], b"") == (0, "0 primes below 0\n", "")
    code, _, err = main(["primes"], b"many")
    assert (code, err) == (2, "primes: the input is an integer N\n")
    code, _, err = main(["primes"], str(demo_jobs.MAX_N + 1).encode())
    assert code == 2
    assert "must be 0" in err
    assert main(["fortune"], b"")[0] == 2
    assert demo_jobs.word_counts("It's it, IT's") == [(2, "it's"), (1, "it")]
