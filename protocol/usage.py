"""Usage reports: the provider's signed statement of what a job has used and
what it costs so far.

Why this exists: the consumer pays (by voucher) for what the provider says
a job used, so the statement is signed — a consumer can show what it was
billed for, and a provider cannot later claim other counters for a report
it sent. The consumer's rule over a sequence of reports is
``compute.consumer_decide``; this module holds the value and its bytes.

Wire form (canonical, DESIGN §3)::

    usage = ["usage", 1, economy, provider, offer, job, channel, seq,
             cpu_ms, wall_ms, mib_ms, peak_bytes, price, final]
    signed-usage = ["signed-usage", 1, usage, signature]

    usage_id = BLAKE2b-256("mycelia/usage/1\\0" || usage)
    the provider signs "mycelia/sig/usage/1\\0" || usage_id

* ``economy``, ``provider``: the offer's; ``offer``, ``job``, ``channel``:
  the ids of the offer, the job (``compute_frames.Job.id``) and the payment
  channel (the ``channel.open`` entry's id) — each 32 bytes. They bind the
  report to one job, so it is never replayed into another.
* ``seq`` (1 … 2**32-1): 1 for a job's first report, then one more each.
* ``cpu_ms``, ``wall_ms``, ``mib_ms`` (0 … 2**63-1): the cumulative
  counters (units in ``pricing.py``).
* ``peak_bytes``: the highest memory use seen, in bytes, or -1 when the
  platform cannot measure it (the codec has no nil). Informative: memory is
  billed as reserved, not as used.
* ``price`` (0 … 2**63-1 minor units): ``pricing.price`` of the counters on
  the job's runtime — what the job has cost so far, excluding what the
  channel paid before the job (the job's ``base``).
* ``final``: 1 in the report a RESULT frame carries (the job ended), else 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.domains import COMPUTE_USAGE, ID_SIZE
from mycelia.protocol.pricing import Usage, check_amount
from mycelia.protocol.reasons import Reason, Refused

__all__ = [
    "MAX_SIGNED_USAGE_BYTES",
    "MAX_USAGE_BYTES",
    "MAX_USAGE_SEQ",
    "NO_PEAK",
    "SignedUsage",
    "UsageReport",
]

MAX_USAGE_SEQ = (1 << 32) - 1
#: ``peak_bytes`` when the platform cannot measure the peak.
NO_PEAK = -1
#: The longest canonical usage report and signed report (every field at its
#: widest; a test builds them).
MAX_USAGE_BYTES = 229
MAX_SIGNED_USAGE_BYTES = 310

_M = Reason.MALFORMED


@dataclass(frozen=True, slots=True)
class UsageReport:
    """One report (see the module docstring). Validated when built."""

    economy: bytes
    provider: bytes
    offer: bytes
    job: bytes
    channel: bytes
    seq: int
    usage: Usage
    peak_bytes: int
    price: int
    final: bool

    def __post_init__(self) -> None:
        schema.bytes_(self.economy, "economy", ID_SIZE)
        schema.bytes_(self.provider, "provider", keys.PUBLIC_KEY_SIZE)
        schema.bytes_(self.offer, "offer", ID_SIZE)
        schema.bytes_(self.job, "job", ID_SIZE)
        schema.bytes_(self.channel, "channel", ID_SIZE)
        schema.int_(self.seq, "seq", 1, MAX_USAGE_SEQ)
        if type(self.usage) is not Usage:
            raise Refused(_M, "usage report: expected Usage counters")
        schema.int_(self.peak_bytes, "peak_bytes", NO_PEAK, schema.INT64_MAX)
        check_amount(self.price, "price")
        if type(self.final) is not bool:
            raise Refused(_M, "final: expected a bool")

    def to_wire(self) -> list[Any]:
        u = self.usage
        return [
            "usage",
            1,
            self.economy,
            self.provider,
            self.offer,
            self.job,
            self.channel,
            self.seq,
            u.cpu_ms,
            u.wall_ms,
            u.mib_ms,
            self.peak_bytes,
            self.price,
            int(self.final),
        ]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @property
    def id(self) -> bytes:
        return COMPUTE_USAGE.id(self.encode())

    def sign(self, key: keys.SigningKey) -> SignedUsage:
        if key.public != self.provider:
            raise ValueError("a usage report is signed by its provider")
        return SignedUsage(self, keys.sign(key, COMPUTE_USAGE, self.id))

    @classmethod
    def decode(cls, data: bytes) -> UsageReport:
        return cls.from_wire(codec.decode(data, max_size=MAX_USAGE_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> UsageReport:
        f = schema.array(value, "usage", 1, 14, "usage report")
        final = schema.int_(f[13], "final", 0, 1)
        return cls(
            f[2], f[3], f[4], f[5], f[6], f[7], Usage(f[8], f[9], f[10]), f[11], f[12], final == 1
        )


@dataclass(frozen=True, slots=True)
class SignedUsage:
    """A usage report and the provider's signature: what USAGE and RESULT
    frames carry (as these bytes, which the consumer may keep as proof)."""

    report: UsageReport
    signature: bytes

    def __post_init__(self) -> None:
        if type(self.report) is not UsageReport:
            raise Refused(_M, "signed usage: expected a UsageReport")
        schema.bytes_(self.signature, "signature", keys.SIGNATURE_SIZE)

    @property
    def id(self) -> bytes:
        return self.report.id

    def to_wire(self) -> list[Any]:
        return ["signed-usage", 1, self.report.to_wire(), self.signature]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    def verify(self, provider: bytes) -> bytes:
        """The report id if it is ``provider``'s report with its valid
        signature; ``wrong_job`` for another provider's report, ``bad_key``
        if ``provider`` is not a valid Ed25519 key (checked first, as
        everywhere), else ``usage_bad_sig``."""
        if self.report.provider != provider:
            raise Refused(Reason.WRONG_JOB, "the report is another provider's")
        id_ = self.report.id
        keys.check_public_key(provider, "provider")
        if not keys.verify(provider, COMPUTE_USAGE, id_, self.signature):
            raise Refused(Reason.USAGE_BAD_SIG, "the usage report does not verify")
        return id_

    @classmethod
    def decode(cls, data: bytes) -> SignedUsage:
        """Strict decode: at most :data:`MAX_SIGNED_USAGE_BYTES`
        (``too_large``), canonical (``non_canonical``), exact shape and
        bounds (``malformed``, ``amount_out_of_range``). Not verified."""
        return cls.from_wire(codec.decode(data, max_size=MAX_SIGNED_USAGE_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> SignedUsage:
        f = schema.array(value, "signed-usage", 1, 4, "signed usage")
        return cls(UsageReport.from_wire(f[2]), f[3])
