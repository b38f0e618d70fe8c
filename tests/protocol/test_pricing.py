"""The price function (``protocol/pricing.py``): exact integers against a
rational-arithmetic oracle, monotone in every counter, the fee charged
once, never above what the runtime's limits imply, and worked examples.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol.offers import MAX_CPU_MS, MAX_RESERVED_MIB, MAX_WALL_MS, Limits, Runtime
from mycelia.protocol.pricing import Prices, Usage, cost, price, price_cap
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.schema import INT64_MAX
from tests.protocol.compute_world import LIMITS, PRICES, offer

# Prices up to 2**20 and counters up to 2**40 keep every product far from
# any bound while exercising the rounding; the extremes have their own tests.
prices = st.builds(
    Prices,
    st.integers(0, 1 << 20),
    st.integers(0, 1 << 20),
    st.integers(0, 1 << 20),
    st.integers(0, 1 << 20),
)
counters = st.integers(0, 1 << 40)
usages = st.builds(Usage, counters, counters, counters)


def oracle(p: Prices, u: Usage) -> int:
    """The documented formula in rational arithmetic, rounded up once."""
    exact = (
        Fraction(p.fee)
        + u.cpu_ms * p.per_cpu_ms
        + Fraction(u.mib_ms, 1000) * p.per_mib_s
        + Fraction(u.wall_ms, 1000) * p.per_wall_s
    )
    return math.ceil(exact)


@given(prices, usages)
def test_price_is_the_formula_rounded_up_once(p: Prices, u: Usage) -> None:
    assert cost(p, u) == oracle(p, u)


@given(prices, usages, st.sampled_from(["cpu_ms", "wall_ms", "mib_ms"]), counters)
def test_price_is_monotone_in_every_counter(p: Prices, u: Usage, counter: str, more: int) -> None:
    grown = Usage(**{**_fields(u), counter: getattr(u, counter) + more})
    assert cost(p, grown) >= cost(p, u)


@given(prices, usages, usages)
def test_the_fee_is_charged_once_and_rounding_happens_once(p: Prices, a: Usage, b: Usage) -> None:
    assert cost(p, Usage()) == p.fee
    both = Usage(a.cpu_ms + b.cpu_ms, a.wall_ms + b.wall_ms, a.mib_ms + b.mib_ms)
    split = cost(p, a) + cost(p, b) - p.fee  # the same usage billed in two parts
    # Never more for the whole than for the parts (no second fee, no extra
    # rounding), and at most one minor unit less (the parts each rounded up).
    assert split - 1 <= cost(p, both) <= split


runtimes = st.builds(
    lambda p, cpu, wall, mib: Runtime("r", Limits(cpu, wall, mib, 0, 0), p),
    prices,
    st.integers(1, MAX_CPU_MS),
    st.integers(1, MAX_WALL_MS),
    st.integers(1, 4096),
)


@given(runtimes, st.data())
def test_price_never_exceeds_what_the_runtime_limits_imply(
    rt: Runtime, data: st.DataObject
) -> None:
    lim = rt.limits
    wall = data.draw(st.integers(0, lim.max_wall_ms))
    u = Usage(
        data.draw(st.integers(0, lim.max_cpu_ms)),
        wall,
        data.draw(st.integers(0, lim.reserved_mib * wall)),
    )
    assert lim.excess(u) is None
    cap = price_cap(rt.prices, lim)
    assert cost(rt.prices, u) <= cap
    assert cost(rt.prices, lim.ceiling) == cap  # the cap is reached at the limits


@given(runtimes, st.data())
def test_a_job_within_the_runtime_limits_costs_at_most_the_runtime_cap(
    rt: Runtime, data: st.DataObject
) -> None:
    lim = rt.limits
    mine = Limits(
        data.draw(st.integers(1, lim.max_cpu_ms)),
        data.draw(st.integers(1, lim.max_wall_ms)),
        data.draw(st.integers(1, lim.reserved_mib)),
        0,
        0,
    )
    assert mine.within(lim) is None
    assert price_cap(rt.prices, mine) <= price_cap(rt.prices, lim)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # fee only
        (Usage(), 100),
        # 1 cpu-ms: 100 + 2
        (Usage(cpu_ms=1), 102),
        # 1 wall-ms: 5/1000 of a unit, rounded up to 1
        (Usage(wall_ms=1), 101),
        # 200 wall-ms: exactly 1 unit
        (Usage(wall_ms=200), 101),
        # 201 wall-ms: 1.005, rounded up
        (Usage(wall_ms=201), 102),
        # memory and wall share the one rounding: 0.5 + 0.5 = 1
        (Usage(wall_ms=100, mib_ms=500), 101),
        # 1.5 s at 512 MiB, 1.5 cpu-s: 100 + 3000 + ceil((768000 + 7500) / 1000)
        (Usage(cpu_ms=1500, wall_ms=1500, mib_ms=512 * 1500), 100 + 3000 + 776),
        # 2.001 s: 100 + 3000 + ceil((1024512 + 10005) / 1000) = 100 + 3000 + 1035
        (Usage(cpu_ms=1500, wall_ms=2001, mib_ms=512 * 2001), 4135),
    ],
)
def test_worked_examples(usage: Usage, expected: int) -> None:
    assert Prices(fee=100, per_cpu_ms=2, per_mib_s=1, per_wall_s=5) == PRICES
    assert price(offer(), "python3", usage) == expected


def test_price_names_the_runtime() -> None:
    o = offer()
    assert price(o, "wasm", Usage(cpu_ms=7, wall_ms=999_999)) == 7  # wasm: 1 per cpu-ms only
    with pytest.raises(Refused) as info:
        price(o, "java", Usage())
    assert info.value.reason is Reason.UNKNOWN_RUNTIME


def test_the_largest_runtime_that_fits_an_amount() -> None:
    lim = Limits(MAX_CPU_MS, MAX_WALL_MS, MAX_RESERVED_MIB, 0, 0)
    per_cpu = (INT64_MAX - 1) // MAX_CPU_MS
    rt = Runtime("big", lim, Prices(0, per_cpu, 0, 0))
    assert price_cap(rt.prices, lim) == per_cpu * MAX_CPU_MS <= INT64_MAX
    with pytest.raises(Refused) as info:
        Runtime("big", lim, Prices(0, per_cpu + 1, 0, 0))
    assert info.value.reason is Reason.AMOUNT_OUT_OF_RANGE
    with pytest.raises(Refused) as info:
        Runtime("big", lim, Prices(INT64_MAX, 0, 0, 1))  # the fee plus a unit of wall
    assert info.value.reason is Reason.AMOUNT_OUT_OF_RANGE


@pytest.mark.parametrize("bad", [-1, INT64_MAX + 1, True, "1"])
def test_prices_are_amounts(bad: object) -> None:
    for i in range(4):
        args: list[object] = [0, 0, 0, 0]
        args[i] = bad
        with pytest.raises(Refused) as info:
            Prices(*args)  # type: ignore[arg-type]
        assert info.value.reason is Reason.AMOUNT_OUT_OF_RANGE


@pytest.mark.parametrize("bad", [-1, INT64_MAX + 1, True, 1.0])
def test_counters_are_non_negative_integers(bad: object) -> None:
    for name in ("cpu_ms", "wall_ms", "mib_ms"):
        with pytest.raises(Refused) as info:
            Usage(**{name: bad})  # type: ignore[arg-type]
        assert info.value.reason is Reason.MALFORMED


def test_limits_excess_names_the_counter() -> None:
    assert LIMITS.excess(Usage(cpu_ms=60_000, wall_ms=120_000, mib_ms=512 * 120_000)) is None
    assert "cpu_ms" in (LIMITS.excess(Usage(cpu_ms=60_001)) or "")
    assert "wall_ms" in (LIMITS.excess(Usage(wall_ms=120_001)) or "")
    # memory beyond the reservation over the running time
    assert "mib_ms" in (LIMITS.excess(Usage(wall_ms=10, mib_ms=512 * 10 + 1)) or "")


def _fields(u: Usage) -> dict[str, int]:
    return {"cpu_ms": u.cpu_ms, "wall_ms": u.wall_ms, "mib_ms": u.mib_ms}
