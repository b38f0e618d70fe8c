"""The frames of ``/mycelia/compute/1``: one encoder and one strict decoder
for each, through the one codec.

Why this exists: a compute job's frames are untrusted both ways for as long
as the job runs, so every frame type has exactly one byte form, fixed here
(and in ``tests/vectors/compute.json``), and one bounded decoder that refuses
oversize, wrong types, floats and unknown types before anything acts on it.
Which answer may follow which request is ``compute.py``'s rule; the payment
rules are ``compute.py`` too.

The protocol is request/response (``node/p2p.py``'s streams: one request
frame, one answer frame, then the stream closes), so a job outlives any one
stream: the consumer sends each request on a stream of its own and every
request but the JOB names the job by id. Every frame is a canonical msgpack
array ``[TAG, 1, ...]`` (upper-case tags, so no frame is mistaken for the
lower-case signed structures it carries), the payload of one length-prefixed
frame (``framing.py``) of at most :data:`MAX_FRAME_BYTES`::

    requests (consumer -> provider)
    ["JOB",     1, job]                          start a job
    ["VOUCHER", 1, job_id, voucher]              pay (and ask how it goes)
    ["POLL",    1, job_id]                       ask how it goes
    ["CANCEL",  1, job_id]                       stop the job

    answers (provider -> consumer), one to each request
    ["USAGE",   1, signed_usage]                 the job runs: its newest report
    ["RESULT",  1, exit_status, outcome, output, signed_usage]
                                                 the job ended (every later answer)
    ["ERROR",   1, reason, detail]               refused

Signed structures travel as their own canonical bytes (msgpack bin): the
receiver decodes them strictly with their own bound and may keep them as
they came (a signed usage report is the consumer's proof of a bill, a
voucher the provider's claim on the channel). The job is not signed — the
channel's vouchers pay for it — so it travels inline::

    job   = ["job", 1, economy, offer, channel, base, nonce, runtime, limits, input]
    input = ["inline", data] | ["hash", digest, size]
    job_id = BLAKE2b-256("mycelia/job/1\\0" || job)

* ``offer``: the id of the offer accepted; ``channel``: the id of the
  ``channel.open`` entry that pays; ``base``: the newest voucher amount on
  the channel before this job (the job's vouchers are ``base`` + its price,
  so one channel pays for many jobs in turn); ``nonce``: 16 bytes the
  consumer picks, so two equal jobs have distinct ids.
* ``runtime``: a runtime name from the offer; ``limits``: the consumer's
  own, each at most the runtime's (``offers.Limits``).
* ``input``: inline, at most :data:`MAX_INLINE_INPUT_BYTES`; or by hash
  (``digest`` = BLAKE2b-256("mycelia/job-input/1\\0" || bytes), 32 bytes,
  and ``size``), for input the provider already holds or fetches.
* ``job_id``: 32 bytes, the id of a JOB sent before.
* RESULT: ``exit_status`` is the job's exit code (0 … 255) or -N for a job
  killed by signal N (N ≤ 64), 0 for a job that never started; ``outcome``
  is one of :data:`OUTCOMES`; ``output`` at most
  ``offers.MAX_OUTPUT_BYTES``; ``signed_usage`` the final report
  (``final`` = 1; a USAGE frame's report has ``final`` = 0).
* ERROR: ``reason`` is a reason code (``reasons.py``; 1 … 64 bytes of
  ``[a-z0-9_]``, kept as a string so a newer peer's codes pass through),
  ``detail`` free text, at most :data:`MAX_DETAIL_BYTES` bytes.

A voucher is the channel's (``protocol/channels.py``): this module carries
its bytes and bounds them; :func:`check_voucher` is the one place that
learns its type. :func:`decode_request` and :func:`decode_answer` refuse a
frame of the other direction (``unexpected_frame``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mycelia.protocol import channels, codec, schema
from mycelia.protocol.domains import COMPUTE_JOB, COMPUTE_JOB_INPUT, ID_SIZE
from mycelia.protocol.offers import (
    MAX_INPUT_BYTES,
    MAX_OUTPUT_BYTES,
    Limits,
    check_runtime_name,
)
from mycelia.protocol.pricing import check_amount
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.usage import SignedUsage

__all__ = [
    "ANSWER_TYPES",
    "COMPLETED",
    "FRAME_TYPES",
    "MAX_DETAIL_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_INLINE_INPUT_BYTES",
    "MAX_SIGNED_VOUCHER_BYTES",
    "NONCE_SIZE",
    "OUTCOMES",
    "PROTOCOL",
    "REQUEST_TYPES",
    "Answer",
    "CancelFrame",
    "ErrorFrame",
    "Frame",
    "HashInput",
    "InlineInput",
    "Job",
    "JobFrame",
    "JobInput",
    "PollFrame",
    "Request",
    "ResultFrame",
    "UsageFrame",
    "VoucherFrame",
    "check_voucher",
    "decode_answer",
    "decode_frame",
    "decode_request",
    "input_digest",
]

PROTOCOL = "/mycelia/compute/1"
#: Largest frame either side sends or accepts (an inline input or an output
#: with its envelope fits).
MAX_FRAME_BYTES = 1 << 21
#: Largest input carried in the JOB frame itself.
MAX_INLINE_INPUT_BYTES = 1 << 20
NONCE_SIZE = 16
MAX_DETAIL_BYTES = 500
MAX_REASON_BYTES = 64
MIN_EXIT_STATUS = -64
MAX_EXIT_STATUS = 255

#: The job ran and exited by itself (its exit status says how).
COMPLETED = "completed"
#: How a job ended: by itself; stopped at one of its limits (cpu, wall,
#: memory, output); killed for non-payment (``compute.provider_decide``);
#: cancelled by the consumer; or it could not run (the provider's failure).
OUTCOMES = (COMPLETED, "limit", "unpaid", "cancelled", "failed")

_M = Reason.MALFORMED
_CODE = re.compile(r"[a-z0-9_]+", re.ASCII)


# -- the voucher -------------------------------------------------------------------------
#: Bound on the signed voucher a VOUCHER frame carries: channels' own.
MAX_SIGNED_VOUCHER_BYTES = channels.MAX_SIGNED_VOUCHER_BYTES


def check_voucher(raw: Any) -> bytes:
    """A VOUCHER frame's signed voucher: bytes of at most
    :data:`MAX_SIGNED_VOUCHER_BYTES` that decode as a
    :class:`~mycelia.protocol.channels.SignedVoucher` (``malformed``,
    ``too_large``). The bytes are kept as received; the provider verifies
    them against the channel with channels' rules."""
    _decode_voucher(raw)
    return bytes(raw)  # bytes already (checked): the same object


def _decode_voucher(raw: Any) -> channels.SignedVoucher:
    if type(raw) is not bytes:
        raise Refused(_M, "voucher: expected bytes")
    if not raw:
        raise Refused(_M, "voucher: empty")
    if len(raw) > MAX_SIGNED_VOUCHER_BYTES:
        raise Refused(Reason.TOO_LARGE, f"voucher of {len(raw)} bytes > {MAX_SIGNED_VOUCHER_BYTES}")
    return channels.SignedVoucher.decode(raw)


# -- job ------------------------------------------------------------------------------


def input_digest(data: bytes) -> bytes:
    """The content hash that names a job input passed by hash."""
    return COMPUTE_JOB_INPUT.id(data)


@dataclass(frozen=True, slots=True)
class InlineInput:
    """Input carried in the JOB frame. Wire: ``["inline", data]``."""

    data: bytes

    def __post_init__(self) -> None:
        if type(self.data) is not bytes:
            raise Refused(_M, "input: expected bytes")
        if len(self.data) > MAX_INLINE_INPUT_BYTES:
            raise Refused(
                Reason.TOO_LARGE,
                f"inline input of {len(self.data)} bytes > {MAX_INLINE_INPUT_BYTES}",
            )

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def digest(self) -> bytes:
        return input_digest(self.data)

    def to_wire(self) -> list[Any]:
        return ["inline", self.data]


@dataclass(frozen=True, slots=True)
class HashInput:
    """Input named by its content hash. Wire: ``["hash", digest, size]``."""

    digest: bytes
    size: int

    def __post_init__(self) -> None:
        schema.bytes_(self.digest, "input digest", ID_SIZE)
        schema.int_(self.size, "input size", 0, MAX_INPUT_BYTES)

    def to_wire(self) -> list[Any]:
        return ["hash", self.digest, self.size]


JobInput = InlineInput | HashInput


def _input_from_wire(value: Any) -> JobInput:
    f = schema.list_(value, "input", min_len=2, max_len=3)
    if f[0] == "inline" and len(f) == 2:
        return InlineInput(f[1])
    if f[0] == "hash" and len(f) == 3:
        return HashInput(f[1], f[2])
    raise Refused(_M, "input: expected ['inline', data] or ['hash', digest, size]")


@dataclass(frozen=True, slots=True)
class Job:
    """A consumer's job request (the module docstring has its fields)."""

    economy: bytes
    offer: bytes
    channel: bytes
    base: int
    nonce: bytes
    runtime: str
    limits: Limits
    input: JobInput

    def __post_init__(self) -> None:
        schema.bytes_(self.economy, "economy", ID_SIZE)
        schema.bytes_(self.offer, "offer", ID_SIZE)
        schema.bytes_(self.channel, "channel", ID_SIZE)
        check_amount(self.base, "base")
        schema.bytes_(self.nonce, "nonce", NONCE_SIZE)
        check_runtime_name(self.runtime)
        if type(self.limits) is not Limits:
            raise Refused(_M, "job: expected Limits")
        if type(self.input) not in (InlineInput, HashInput):
            raise Refused(_M, "job: expected an InlineInput or a HashInput")

    def to_wire(self) -> list[Any]:
        return [
            "job",
            1,
            self.economy,
            self.offer,
            self.channel,
            self.base,
            self.nonce,
            self.runtime,
            self.limits.to_wire(),
            self.input.to_wire(),
        ]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @property
    def id(self) -> bytes:
        return COMPUTE_JOB.id(self.encode())

    @classmethod
    def from_wire(cls, value: Any) -> Job:
        f = schema.array(value, "job", 1, 10, "job")
        return cls(
            f[2], f[3], f[4], f[5], f[6], f[7], Limits.from_wire(f[8]), _input_from_wire(f[9])
        )


# -- frames ---------------------------------------------------------------------------


class _Frame:
    """What every frame has: its tag, its wire array and its bytes."""

    __slots__ = ()
    tag: ClassVar[str]

    def to_wire(self) -> list[Any]:
        raise NotImplementedError

    def encode(self) -> bytes:
        """The frame's canonical bytes: the payload of one length-prefixed frame."""
        return codec.encode_trusted(self.to_wire())


@dataclass(frozen=True, slots=True)
class JobFrame(_Frame):
    """Start a job (asking again for the same job answers as a POLL would)."""

    tag: ClassVar[str] = "JOB"
    job: Job

    def __post_init__(self) -> None:
        if type(self.job) is not Job:
            raise Refused(_M, "JOB: expected a Job")

    def to_wire(self) -> list[Any]:
        return [self.tag, 1, self.job.to_wire()]

    @classmethod
    def from_wire(cls, f: list[Any]) -> JobFrame:
        f = schema.array(f, cls.tag, 1, 3, "JOB frame")
        return cls(Job.from_wire(f[2]))


def _usage_bytes(value: Any, what: str) -> SignedUsage:
    return SignedUsage.decode(schema.bytes_(value, what, max_size=MAX_FRAME_BYTES))


@dataclass(frozen=True, slots=True)
class UsageFrame(_Frame):
    """A running job's usage so far (``final`` = 0: the final report comes
    in the RESULT)."""

    tag: ClassVar[str] = "USAGE"
    usage: SignedUsage

    def __post_init__(self) -> None:
        if type(self.usage) is not SignedUsage:
            raise Refused(_M, "USAGE: expected a SignedUsage")
        if self.usage.report.final:
            raise Refused(_M, "USAGE: the final report travels in the RESULT frame")

    def to_wire(self) -> list[Any]:
        return [self.tag, 1, self.usage.encode()]

    @classmethod
    def from_wire(cls, f: list[Any]) -> UsageFrame:
        f = schema.array(f, cls.tag, 1, 3, "USAGE frame")
        return cls(_usage_bytes(f[2], "usage"))


def _job_id(value: Any) -> bytes:
    return schema.bytes_(value, "job", ID_SIZE)


@dataclass(frozen=True, slots=True)
class VoucherFrame(_Frame):
    """Pay for job ``job``: the channel's newest signed voucher (its bytes);
    answered as a POLL."""

    tag: ClassVar[str] = "VOUCHER"
    job: bytes
    voucher: bytes
    #: the voucher, decoded (once, when the frame is built)
    signed: channels.SignedVoucher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _job_id(self.job)
        object.__setattr__(self, "signed", _decode_voucher(self.voucher))

    def to_wire(self) -> list[Any]:
        return [self.tag, 1, self.job, self.voucher]

    @classmethod
    def from_wire(cls, f: list[Any]) -> VoucherFrame:
        f = schema.array(f, cls.tag, 1, 4, "VOUCHER frame")
        return cls(_job_id(f[2]), f[3])


@dataclass(frozen=True, slots=True)
class PollFrame(_Frame):
    """Ask how job ``job`` goes: answered with its newest USAGE, its RESULT
    once it ended, or an ERROR."""

    tag: ClassVar[str] = "POLL"
    job: bytes

    def __post_init__(self) -> None:
        _job_id(self.job)

    def to_wire(self) -> list[Any]:
        return [self.tag, 1, self.job]

    @classmethod
    def from_wire(cls, f: list[Any]) -> PollFrame:
        f = schema.array(f, cls.tag, 1, 3, "POLL frame")
        return cls(_job_id(f[2]))


@dataclass(frozen=True, slots=True)
class ResultFrame(_Frame):
    tag: ClassVar[str] = "RESULT"
    exit_status: int
    outcome: str
    output: bytes
    usage: SignedUsage

    def __post_init__(self) -> None:
        schema.int_(self.exit_status, "exit_status", MIN_EXIT_STATUS, MAX_EXIT_STATUS)
        if self.outcome not in OUTCOMES or type(self.outcome) is not str:
            raise Refused(_M, f"RESULT: outcome {self.outcome!r} is not one of {OUTCOMES}")
        if type(self.output) is not bytes:
            raise Refused(_M, "RESULT: output: expected bytes")
        if len(self.output) > MAX_OUTPUT_BYTES:
            raise Refused(
                Reason.TOO_LARGE, f"output of {len(self.output)} bytes > {MAX_OUTPUT_BYTES}"
            )
        if type(self.usage) is not SignedUsage:
            raise Refused(_M, "RESULT: expected a SignedUsage")
        if not self.usage.report.final:
            raise Refused(_M, "RESULT: the usage report must be the final one")

    def to_wire(self) -> list[Any]:
        return [self.tag, 1, self.exit_status, self.outcome, self.output, self.usage.encode()]

    @classmethod
    def from_wire(cls, f: list[Any]) -> ResultFrame:
        f = schema.array(f, cls.tag, 1, 6, "RESULT frame")
        outcome = schema.str_(f[3], "outcome", max_bytes=16)
        return cls(f[2], outcome, f[4], _usage_bytes(f[5], "usage"))


@dataclass(frozen=True, slots=True)
class CancelFrame(_Frame):
    """The consumer wants job ``job`` stopped: the provider kills it and
    answers as a POLL (the RESULT, outcome ``cancelled``, once it ended; its
    final usage is to be paid). Cancelling a job that ended changes nothing."""

    tag: ClassVar[str] = "CANCEL"
    job: bytes

    def __post_init__(self) -> None:
        _job_id(self.job)

    def to_wire(self) -> list[Any]:
        return [self.tag, 1, self.job]

    @classmethod
    def from_wire(cls, f: list[Any]) -> CancelFrame:
        f = schema.array(f, cls.tag, 1, 3, "CANCEL frame")
        return cls(_job_id(f[2]))


@dataclass(frozen=True, slots=True)
class ErrorFrame(_Frame):
    """A refusal: the answer to a request the provider will not (or can no
    longer) serve. After an ERROR to a job's request the consumer pays
    nothing more for it."""

    tag: ClassVar[str] = "ERROR"
    code: str
    detail: str = ""

    def __post_init__(self) -> None:
        code = schema.str_(self.code, "reason", min_bytes=1, max_bytes=MAX_REASON_BYTES)
        if not _CODE.fullmatch(code):
            raise Refused(_M, f"reason {code!r}: expected [a-z0-9_]+")
        schema.str_(self.detail, "detail", max_bytes=MAX_DETAIL_BYTES)

    @classmethod
    def of(cls, reason: str, detail: str = "") -> ErrorFrame:
        """An ERROR for ``reason`` (a :class:`Reason`, or a node's own code:
        any ``[a-z0-9_]`` string), its detail cut to :data:`MAX_DETAIL_BYTES`
        (at a character boundary)."""
        cut = detail.encode()[:MAX_DETAIL_BYTES].decode(errors="ignore")
        return cls(str(reason), cut)

    @property
    def reason(self) -> Reason | None:
        """The reason, if this node knows the code (a newer peer may send
        codes this one does not)."""
        try:
            return Reason(self.code)
        except ValueError:
            return None

    def to_wire(self) -> list[Any]:
        return [self.tag, 1, self.code, self.detail]

    @classmethod
    def from_wire(cls, f: list[Any]) -> ErrorFrame:
        f = schema.array(f, cls.tag, 1, 4, "ERROR frame")
        return cls(f[2], f[3])


Request = JobFrame | VoucherFrame | PollFrame | CancelFrame
Answer = UsageFrame | ResultFrame | ErrorFrame
Frame = Request | Answer

#: Every frame type by its tag, and the ones each side sends.
REQUEST_TYPES: dict[str, type[Request]] = {
    t.tag: t for t in (JobFrame, VoucherFrame, PollFrame, CancelFrame)
}
ANSWER_TYPES: dict[str, type[Answer]] = {t.tag: t for t in (UsageFrame, ResultFrame, ErrorFrame)}
FRAME_TYPES: dict[str, type[Frame]] = {**REQUEST_TYPES, **ANSWER_TYPES}


def decode_frame(payload: bytes) -> Frame:
    """Strictly decode one frame's payload: at most :data:`MAX_FRAME_BYTES`
    (``too_large``); canonical (``non_canonical``: floats, maps, nil, bool
    anywhere); a known tag (``unknown_frame``); exact shape and bounds
    (``malformed``, ``too_large``, ``amount_out_of_range``, ``bad_key``…
    whatever the carried structure's decoder says)."""
    value = codec.decode(payload, max_size=MAX_FRAME_BYTES)
    if type(value) is not list or not value or type(value[0]) is not str:
        raise Refused(_M, "a frame is an array [TAG, version, ...]")
    kind = FRAME_TYPES.get(value[0])
    if kind is None:
        raise Refused(Reason.UNKNOWN_FRAME, f"unknown frame type {value[0][:16]!r}")
    return kind.from_wire(value)


def decode_request(payload: bytes) -> Request:
    """A request as the provider reads one: :func:`decode_frame`, and
    ``unexpected_frame`` for an answer."""
    f = decode_frame(payload)
    if not isinstance(f, JobFrame | VoucherFrame | PollFrame | CancelFrame):
        raise Refused(Reason.UNEXPECTED_FRAME, f"{f.tag} is an answer, not a request")
    return f


def decode_answer(payload: bytes) -> Answer:
    """An answer as the consumer reads one: :func:`decode_frame`, and
    ``unexpected_frame`` for a request."""
    f = decode_frame(payload)
    if not isinstance(f, UsageFrame | ResultFrame | ErrorFrame):
        raise Refused(Reason.UNEXPECTED_FRAME, f"{f.tag} is a request, not an answer")
    return f
