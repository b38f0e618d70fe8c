"""What a compute job costs: the metered counters, the prices and the one
price function.

Why this exists: a consumer pays a provider by vouchers while the job runs,
so both sides must compute the same amount from the same counters, to the
minor unit, on every platform. That means integers only (no floats anywhere:
a float in decoded input is refused by the codec) and one rounding rule,
written here once; the consumer's check of a usage report, the provider's
credit rule and the test vectors all call :func:`price`.

Units (DESIGN §6)
-----------------

Counters are cumulative from the job's start:

* ``cpu_ms`` — CPU time, milliseconds (user + system, all cores: it may run
  ahead of wall time).
* ``wall_ms`` — running wall time, milliseconds. Time the provider holds the
  job frozen for non-payment is not counted (the provider's own choice to
  wait; see ``compute.py``), so a frozen job costs nothing more.
* ``mib_ms`` — reserved memory × running wall time, MiB·ms: the job's
  reserved MiB times each running millisecond. Memory is billed as reserved,
  not as used (the reservation is what the provider cannot sell to another
  job, and it is measurable everywhere); the peak is reported beside.

Prices are integers in the economy's minor units (an economy that needs
finer prices chooses more decimals at genesis, up to 18):

* ``fee`` per job, charged once, from the start;
* ``per_cpu_ms`` per CPU millisecond;
* ``per_mib_s`` per MiB·s reserved;
* ``per_wall_s`` per second of running wall time.

The formula (exact products, one division at the end, rounded up)::

    price = fee
          + cpu_ms × per_cpu_ms
          + ceil((mib_ms × per_mib_s + wall_ms × per_wall_s) / 1000)

``ceil(n / 1000)`` for ``n >= 0`` is ``(n + 999) // 1000``. Rounding once
at the end (not per term, not per report) makes the price a function of the
counters alone: the same counters give the same price whatever the reports
that led there, and it never decreases as any counter grows. It is also
subadditive past the fee — ``price(a + b) <= price(a) + price(b) - fee`` —
so splitting a job's usage never charges the fee twice or rounds up more
than once per part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mycelia.protocol import schema
from mycelia.protocol.reasons import Reason, Refused

if TYPE_CHECKING:  # offers.py builds on this module; price() only reads an Offer
    from mycelia.protocol.offers import Limits, Offer

__all__ = ["MS_PER_S", "Prices", "Usage", "cost", "price", "price_cap"]

#: Milliseconds per second: the one divisor in the formula.
MS_PER_S = 1000
#: Every price and counter is a signed 64-bit amount (ledger amounts are).
_MAX = schema.INT64_MAX


@dataclass(frozen=True, slots=True)
class Usage:
    """Cumulative counters of one job (see the module docstring for units)."""

    cpu_ms: int = 0
    wall_ms: int = 0
    mib_ms: int = 0

    def __post_init__(self) -> None:
        schema.int_(self.cpu_ms, "cpu_ms", 0, _MAX)
        schema.int_(self.wall_ms, "wall_ms", 0, _MAX)
        schema.int_(self.mib_ms, "mib_ms", 0, _MAX)

    def covers(self, other: Usage) -> bool:
        """Whether every counter is at least ``other``'s (counters only grow)."""
        return (
            self.cpu_ms >= other.cpu_ms
            and self.wall_ms >= other.wall_ms
            and self.mib_ms >= other.mib_ms
        )


@dataclass(frozen=True, slots=True)
class Prices:
    """A runtime's prices in minor units. Wire:
    ``[fee, per_cpu_ms, per_mib_s, per_wall_s]``, each 0 … 2**63-1."""

    fee: int
    per_cpu_ms: int
    per_mib_s: int
    per_wall_s: int

    def __post_init__(self) -> None:
        for name in ("fee", "per_cpu_ms", "per_mib_s", "per_wall_s"):
            schema.int_(getattr(self, name), name, 0, _MAX, reason=Reason.AMOUNT_OUT_OF_RANGE)

    def to_wire(self) -> list[Any]:
        return [self.fee, self.per_cpu_ms, self.per_mib_s, self.per_wall_s]

    @classmethod
    def from_wire(cls, value: Any) -> Prices:
        f = schema.list_(value, "prices", min_len=4, max_len=4)
        return cls(f[0], f[1], f[2], f[3])


def cost(prices: Prices, usage: Usage) -> int:
    """The price of ``usage`` at ``prices`` (the formula in the module
    docstring). Exact: Python integers do not overflow, and every input is
    bounded, so the result is too."""
    metered = usage.mib_ms * prices.per_mib_s + usage.wall_ms * prices.per_wall_s
    return prices.fee + usage.cpu_ms * prices.per_cpu_ms + (metered + MS_PER_S - 1) // MS_PER_S


def price(offer: Offer, runtime: str, usage: Usage) -> int:
    """The price of ``usage`` on the offer's runtime named ``runtime``: the
    one price function every side calls. ``unknown_runtime`` if the offer
    has no such runtime."""
    return cost(offer.runtime(runtime).prices, usage)


def price_cap(prices: Prices, limits: Limits) -> int:
    """The most a job within ``limits`` can cost at ``prices``: the price of
    every counter at its limit (the price is monotone in each counter, so no
    usage the limits admit costs more)."""
    return cost(prices, limits.ceiling)


def check_amount(value: int, what: str) -> int:
    """``value`` as a ledger amount (0 … 2**63-1), else ``amount_out_of_range``."""
    if not 0 <= value <= _MAX:
        raise Refused(Reason.AMOUNT_OUT_OF_RANGE, f"{what} {value} is not in [0, {_MAX}]")
    return value
