"""Choosing the metering tier (and saying why), the usage record, the meters'
final figures, and the runner's checks at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from mycelia.node.compute.metering import Tier, TreeMeter, Usage, choose_tier
from mycelia.node.compute.runner import Runner
from mycelia.node.config import ComputeConfig, ConfigError, RuntimeConfig
from tests.node.compute.conftest import cgroup_base, runtime, user_config


def no_cgroup2(tmp_path: Path) -> Path:
    d = tmp_path / "self"
    d.mkdir()
    (d / "mountinfo").write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    (d / "cgroup").write_text("0::/\n")
    return d


def test_shim_when_asked() -> None:
    tier = choose_tier("shim")
    assert (tier.name, tier.why, tier.delegation) == ("shim", "compute.metering = shim", None)


def test_auto_falls_back_to_the_shim_and_says_why(tmp_path: Path) -> None:
    tier = choose_tier("auto", proc_self=no_cgroup2(tmp_path))
    assert tier.name == "shim"
    assert tier.why == "no usable cgroup v2: no cgroup v2 hierarchy is mounted"
    plain = tmp_path / "plain"
    plain.mkdir()
    tier = choose_tier("auto", plain)
    assert tier.name == "shim"
    assert "is not a cgroup v2 directory" in tier.why


def test_cgroup_asked_for_and_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        choose_tier("cgroup", proc_self=no_cgroup2(tmp_path))
    assert exc.value.key == "compute.metering"
    assert "compute.metering = cgroup, but no cgroup v2 hierarchy is mounted" in str(exc.value)


def test_auto_takes_a_delegated_cgroup() -> None:
    with cgroup_base() as base:
        tier = choose_tier("auto", base)
        assert tier.name == "cgroup"
        assert tier.delegation is not None
        assert tier.delegation.base == base
        assert tier.why.startswith(f"cgroup v2 {base} is delegated and writable (")
        assert ("memory peak reported" in tier.why) == tier.delegation.memory


def test_usage_values() -> None:
    u = Usage(cpu_ms=1500, wall_ms=2000, reserved_mib=256)
    assert u.mib_ms == 512_000
    assert u.peak_memory_bytes is None
    for bad in ({"cpu_ms": -1}, {"wall_ms": 1.5}, {"reserved_mib": True}):
        fields = {"cpu_ms": 1, "wall_ms": 1, "reserved_mib": 1, **bad}
        with pytest.raises(ValueError, match="expected an integer >= 0"):
            Usage(**fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="peak_memory_bytes"):
        Usage(1, 1, 1, peak_memory_bytes=-5)
    with pytest.raises(ValueError, match="not a metering tier"):
        Tier("cgroup", "no delegation given")
    with pytest.raises(ValueError, match="not a metering tier"):
        Tier("proc", "")


def test_the_shim_tier_subtracts_the_shim_s_own_cpu() -> None:
    meter = TreeMeter(shim_pid=1)
    assert meter.final_cpu_us(shim_total_us=900_000, shim_self_us=40_000) == 860_000
    # A shim that died before reporting: everything is billed.
    assert meter.final_cpu_us(shim_total_us=900_000, shim_self_us=None) == 900_000
    assert meter.peak_bytes() is None


def test_runner_open_checks_the_runtimes_and_reports_the_tier(tmp_path: Path) -> None:
    missing = RuntimeConfig(name="gone", command=(str(tmp_path / "nope"),))
    config = ComputeConfig(enabled=True, user=user_config(), metering="shim", runtimes=(missing,))
    with pytest.raises(ConfigError) as exc:
        Runner.open(config)
    assert exc.value.key == "compute.runtimes.gone.command"
    assert "is not an executable file" in str(exc.value)
    config = ComputeConfig(
        enabled=True,
        user=user_config(),
        metering="cgroup",
        cgroup=tmp_path,
        runtimes=(runtime("echo", "echo"),),
    )
    with pytest.raises(ConfigError) as exc:
        Runner.open(config)
    assert exc.value.key == "compute.metering"
    config = ComputeConfig(enabled=True, user=user_config(), metering="shim")
    with Runner.open(config) as runner:
        assert runner.tier is not None
        assert (runner.tier.name, runner.tier.why) == ("shim", "compute.metering = shim")
        work = runner.work.path
        assert work.is_dir()
    assert not work.exists()


def test_usage_gives_the_protocol_s_counters() -> None:
    from mycelia.protocol import pricing

    u = Usage(cpu_ms=1500, wall_ms=2000, reserved_mib=256, peak_memory_bytes=10)
    assert u.counters() == pricing.Usage(cpu_ms=1500, wall_ms=2000, mib_ms=512_000)
