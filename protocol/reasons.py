"""Stable refusal reasons: the one vocabulary every layer answers in.

Why this exists: a wallet, a device, an operator and a validator on another
continent must all name a refusal the same way, in logs, over the RPC and on
the wire. So every "no" in mycelia is a :class:`Reason` — a short lowercase
string that never changes meaning once released — plus a free-text detail for
humans, which may change.

How it works: decoders and rule checks raise :class:`Refused`; the ledger's
``check`` turns that into a :class:`Verdict` value a validator can send back.
A verdict may carry *needs*: things the checker did not know but that the
submitter could supply (a chain prefix, a member's admission). A verdict with
needs is curable; one without is final for that state.

Final or not: a validator refuses against its *own*, possibly stale, view
of the ledger. Some refusals hold whoever checks and whenever (a bad
signature, a malformed body, the author's slot taken by another entry);
others only say what this checker has not seen yet (a credit that would
cover the debit, an admission, the author's previous entry, a clock that has
not caught up). :data:`STALE_STATE` lists the second kind: a submitter keeps
such an entry pending — asking again as it and the validators learn more —
until a deadline, and only then gives up, saying that the refusal was not
final (the same entry may still be certified through another node).
:func:`is_final` is the one test every layer uses.

Adding a reason is fine; renaming or re-purposing one is a breaking change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "STALE_STATE",
    "NeedAdmission",
    "NeedCertificate",
    "NeedChain",
    "Reason",
    "Refused",
    "Verdict",
    "is_final",
]


class Reason(enum.StrEnum):
    """Why something was refused. The value is the stable wire/RPC code."""

    # -- encoding and structure ------------------------------------------------
    #: bytes are not the one canonical msgpack form (re-encoding differs,
    #: trailing bytes, maps, floats, nil/bool, ext types, bad UTF-8, truncation).
    NON_CANONICAL = "non_canonical"
    #: input exceeds a size, count or depth bound.
    TOO_LARGE = "too_large"
    #: well-formed msgpack, but not the expected structure (wrong tag, version,
    #: field count or field type).
    MALFORMED = "malformed"
    #: the entry's body does not match its kind's schema or value rules.
    MALFORMED_BODY = "malformed_body"
    #: the entry names a kind this node does not know.
    UNKNOWN_KIND = "unknown_kind"

    # -- keys and signatures -----------------------------------------------------
    #: a public key is not a valid Ed25519 key (wrong length, non-canonical,
    #: small order, not in the prime-order subgroup), or a did:key is not an
    #: Ed25519 did:key.
    BAD_KEY = "bad_key"
    #: a signature does not verify for the key and domain it claims.
    BAD_SIGNATURE = "bad_signature"

    # -- economies and certificates ---------------------------------------------
    #: a genesis document breaks a rule (quorum not > 2/3, duplicate
    #: validators, bad policy) or lacks a quorum of validator signatures.
    BAD_GENESIS = "bad_genesis"
    #: the data is for another economy than the one it was presented to.
    WRONG_ECONOMY = "wrong_economy"
    #: the validator-set epoch is not the one in force.
    WRONG_EPOCH = "wrong_epoch"
    #: a vote or signature comes from a key that is not a validator.
    NOT_VALIDATOR = "not_validator"
    #: a signer bitmap has the wrong length, stray bits, or disagrees with the
    #: number of signatures.
    BAD_BITMAP = "bad_bitmap"
    #: the signers' weight does not reach the economy's quorum.
    QUORUM_NOT_REACHED = "quorum_not_reached"

    # -- chains ------------------------------------------------------------------
    #: the entry's seq is beyond the author's next seq; the certificate waits
    #: for the gap to fill (buffered, not applied).
    SEQ_GAP = "seq_gap"
    #: the entry's seq was already used in the author's chain.
    SEQ_REUSED = "seq_reused"
    #: the entry's prev is not the id of the author's previous entry.
    PREV_MISMATCH = "prev_mismatch"
    #: a certified entry conflicts with one already applied at the same place
    #: in the chain — only possible if more than a third of the validator
    #: weight is faulty. Never applied; reported loudly.
    CONFLICT = "conflict"
    #: the author's chain is known to be forked (two certificates for one of
    #: its slots, ``forks.py``) at or before this entry's seq: nothing of that
    #: author at or past the fork is voted for or applied any more.
    FORKED = "forked"
    #: two certificates offered as fork evidence do not prove a fork: they
    #: are for the same entry, or for different slots (economy, author, seq).
    NOT_A_FORK = "not_a_fork"
    #: the entry's timestamp is too far ahead of the checker's clock; or a
    #: reading's timestamp is before ``readings.MIN_READING_TS_MS`` (2020-01-01),
    #: the mark of a device whose clock was never set.
    CLOCK_SKEW = "clock_skew"
    #: the entry's timestamp is earlier than the author's previous entry.
    TS_REGRESSION = "ts_regression"

    # -- ledger rules --------------------------------------------------------------
    #: an amount or limit is not in its allowed range (must be a positive
    #: integer within the signed 64-bit range, or the field's own bound).
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
    #: the debit would take the balance below the author's credit limit (0 in
    #: an issued economy).
    INSUFFICIENT_BALANCE = "insufficient_balance"
    #: the credit would take a balance past the signed 64-bit maximum.
    BALANCE_OVERFLOW = "balance_overflow"
    #: the account is not (known to be) a member of an approved-membership
    #: economy. Curable: comes with a NeedAdmission.
    NOT_MEMBER = "not_member"
    #: the member was already admitted.
    ALREADY_MEMBER = "already_member"
    #: the author is not a steward of the economy.
    NOT_STEWARD = "not_steward"
    #: the author is not an issuer of the economy.
    NOT_ISSUER = "not_issuer"
    #: the mint would take the issuer past its cap.
    CAP_EXCEEDED = "cap_exceeded"
    #: the economy's kind or policy does not allow this entry kind.
    NOT_ALLOWED = "not_allowed"

    # -- sensors: devices, readings, attestations, claims --------------------------
    #: a P-256 signature's ``s`` is above ``n/2``: the malleable twin of a valid
    #: signature. Sign with low S (replace ``s`` by ``n - s``; secure elements
    #: can be told to).
    HIGH_S = "high_s"
    #: a Merkle proof does not lead from the reading to the attested root (or
    #: names another batch size than the attestation's).
    BAD_PROOF = "bad_proof"
    #: the device is not registered in this economy (or not under the
    #: registration named).
    UNKNOWN_DEVICE = "unknown_device"
    #: the device (its key) is already registered in this economy.
    ALREADY_REGISTERED = "already_registered"
    #: the reading or attestation comes to / from a node that is not the
    #: device's registered host.
    NOT_HOST = "not_host"
    #: the author is not the device's registered owner.
    NOT_OWNER = "not_owner"
    #: the reading's metric is not one the device declared at registration
    #: (or not with the declared exponent).
    UNKNOWN_METRIC = "unknown_metric"
    #: a value is outside the declared ``[min, max]`` of its metric.
    OUT_OF_RANGE = "out_of_range"
    #: the reading's counter is not above the last one accepted for the device.
    REPLAYED_COUNTER = "replayed_counter"
    #: the reading's counter is above ``readings.MAX_COUNTER`` (2**53 - 1): a
    #: corrupt counter (erased flash, a negative number sent unsigned) that,
    #: accepted, would leave the device no counter to send next.
    COUNTER_OUT_OF_RANGE = "counter_out_of_range"
    #: a counter range overlaps one already attested (per host and device) or
    #: already claimed (per owner and device).
    OVERLAP = "overlap"
    #: a claim's attestations skip part of the device's attested history:
    #: they do not directly follow the previous claim, or each other.
    NOT_CONTIGUOUS = "not_contiguous"
    #: the reading or counter range is not covered by the attestation(s)
    #: named (device, counters, metric or value outside what they attest).
    NOT_ATTESTED = "not_attested"
    #: a claim's ``total`` is not the sum the named attestations give.
    TOTAL_MISMATCH = "total_mismatch"

    # -- compute payment channels (channels.py, channel_kinds.py) -----------------
    #: no ``channel.open`` with this id is known: a refund (the consumer's own
    #: open is in its own chain, so absent means none) or a channel lookup.
    #: A close answers ``missing`` instead (another author's open, maybe not
    #: applied here yet).
    CHANNEL_UNKNOWN = "channel_unknown"
    #: a ``channel.close`` whose author is not the channel's provider.
    NOT_PROVIDER = "not_provider"
    #: a ``channel.refund`` whose author is not the channel's consumer.
    NOT_CONSUMER = "not_consumer"
    #: a close or refund names another counterparty or escrow than the
    #: channel's ``channel.open`` (the copies its body carries, ``docs/compute.md``).
    CHANNEL_MISMATCH = "channel_mismatch"
    #: a voucher (or a close's ``voucher_sig``) does not verify under the
    #: channel consumer's key.
    VOUCHER_BAD_SIG = "voucher_bad_sig"
    #: a voucher's cumulative amount (a close's ``amount``) is more than the
    #: channel's escrow.
    VOUCHER_OVER_ESCROW = "voucher_over_escrow"
    #: a release does not verify under the channel provider's key.
    RELEASE_BAD_SIG = "release_bad_sig"
    #: a release's ``final`` is more than the channel's escrow.
    RELEASE_OVER_ESCROW = "release_over_escrow"
    #: a refund without a release, before the checker's clock is past the
    #: channel's ``expiry_ms + REFUND_SKEW_MS``. Not final: the clock advances.
    CHANNEL_NOT_EXPIRED = "channel_not_expired"
    #: the channel was already closed or refunded.
    CHANNEL_SETTLED = "channel_settled"
    #: a ``channel.open`` whose ``expiry_ms`` is more than the economy's
    #: ``max_channel_ms`` past the checker's clock. Not final: a checker whose
    #: clock is behind may accept it later.
    EXPIRY_TOO_FAR = "expiry_too_far"
    #: a ``channel.open`` whose ``expiry_ms`` is not after the checker's clock.
    EXPIRY_PAST = "expiry_past"
    #: a voucher or release presented for another channel than its own.
    WRONG_CHANNEL = "wrong_channel"
    #: a JOB on a channel that expires too soon for the job to run to its
    #: wall limit and be closed before the expiry (``compute.check_job_channel``).
    CHANNEL_EXPIRING = "channel_expiring"
    #: a JOB on a channel that is paying for another job of the provider's
    #: now (a channel pays for one job at a time, ``base`` after ``base``).
    CHANNEL_BUSY = "channel_busy"

    # -- validators --------------------------------------------------------------
    #: a resource the entry consumes is locked to a different entry.
    RESOURCE_LOCKED = "resource_locked"
    #: the checker lacks certificates it needs (the author's chain prefix or a
    #: certificate named by id). Curable: comes with needs.
    MISSING = "missing"
    #: a bounded buffer (pending certificates) is full.
    BUFFER_FULL = "buffer_full"

    # -- compute: offers, jobs, usage, the /mycelia/compute/1 stream ----------------
    # (protocol/compute.py and its modules; docs/compute-protocol.md)
    #: a JOB names an offer id that is not one of the provider's current offers.
    UNKNOWN_OFFER = "unknown_offer"
    #: the offer is past its ``expires_ms`` (a JOB against it, or a gossiped one).
    OFFER_EXPIRED = "offer_expired"
    #: a JOB names a runtime the offer does not list.
    UNKNOWN_RUNTIME = "unknown_runtime"
    #: a JOB's limits or input exceed the runtime's limits, or a usage report
    #: or result exceeds the job's limits.
    OVER_LIMITS = "over_limits"
    #: a JOB's ``base`` is not the newest voucher amount the provider holds on
    #: the channel (the two sides disagree on what was paid before the job).
    BASE_MISMATCH = "base_mismatch"
    #: paying would take the channel's vouchers past its escrow.
    OVER_ESCROW = "over_escrow"
    #: the job's price passes the most the consumer set out to spend on it.
    OVER_MAX_SPEND = "over_max_spend"
    #: a usage report's counters are below the previous report's.
    USAGE_REGRESSED = "usage_regressed"
    #: a usage report's seq is not above the previous one's, or a report
    #: follows the final one.
    USAGE_OUT_OF_ORDER = "usage_out_of_order"
    #: a usage report's price is not the offer's price of its counters.
    PRICE_MISMATCH = "price_mismatch"
    #: a usage report's signature does not verify under the offer's provider key.
    USAGE_BAD_SIG = "usage_bad_sig"
    #: a usage report or result names another economy's offer, another
    #: provider, offer, job or channel than the session's.
    WRONG_JOB = "wrong_job"
    #: a frame's type tag is not one of the compute protocol's frames.
    UNKNOWN_FRAME = "unknown_frame"
    #: a frame that may not come now: an answer where a request belongs or the
    #: other way round, or an answer that cannot follow the previous ones
    #: (a USAGE after the RESULT, a second RESULT).
    UNEXPECTED_FRAME = "unexpected_frame"
    #: a VOUCHER, POLL or CANCEL naming a job the provider does not hold (never
    #: started there, or gone with a restart: jobs do not survive one).
    UNKNOWN_JOB = "unknown_job"
    # -- governance and epochs (governance.py, seals.py, epochs.py, handover.py) --
    #: a ballot or objection after the proposal's close (by the checker's
    #: clock, or by the entry's own timestamp).
    VOTING_CLOSED = "voting_closed"
    #: an enactment or a seal before the proposal's close: the voting is
    #: still open (the checker's clock will pass the close).
    VOTING_OPEN = "voting_open"
    #: the voter (or objector, or delegator) is not in the proposal's
    #: electorate: not a steward or issuer of the proposal's epoch, and not
    #: admitted before the proposal.
    NOT_ELIGIBLE = "not_eligible"
    #: the voter already cast a certified vote on this proposal (a second
    #: one is also refused by its lock, ``resource_locked``).
    ALREADY_VOTED = "already_voted"
    #: a consent proposal has a certified objection: it cannot be enacted.
    OBJECTED = "objected"
    #: a stated tally (or a proposal's stated electorate) differs from the
    #: one the checker computes from the seals and the certified ballots.
    TALLY_MISMATCH = "tally_mismatch"
    #: the epoch an enactment names was already created by another one.
    EPOCH_TAKEN = "epoch_taken"
    #: a proposal names an action this protocol does not know (``fed.agree``
    #: is named, and refused, until federation exists).
    UNKNOWN_ACTION = "unknown_action"
    #: a seal (or a lock snapshot) is not signed by a validator of the epoch
    #: it names, or its signature does not verify.
    BAD_SEAL = "bad_seal"
    #: a quadratic vote's cost (n squared) passes the voter's voice credits
    #: left in the period.
    INSUFFICIENT_CREDITS = "insufficient_credits"
    #: the recomputed tally does not pass the proposal's method (majority,
    #: participation quorum, k yes votes, quadratic yes over no).
    THRESHOLD_NOT_MET = "threshold_not_met"
    #: an action's payload breaks the rules of what it sets (a committee
    #: whose quorum is not above two thirds of its weight, a policy field the
    #: economy's kind does not have, a value out of its range).
    BAD_PAYLOAD = "bad_payload"
    #: the proposal was already enacted (its outcome is certified).
    ALREADY_ENACTED = "already_enacted"


#: Refusals that depend on what the checker has seen so far, not on the entry
#: alone: they may turn into a vote once the checker applies more
#: certificates (credits, an admission, the author's previous entry, an
#: attestation named by a claim — all reported as ``missing``) or its clock
#: advances, so they are not final. The sensors rules answer ``missing`` for
#: facts not seen yet, so their other reasons are final; so do the channel
#: rules, whose two clock refusals are listed here.
STALE_STATE: frozenset[Reason] = frozenset(
    {
        Reason.MISSING,
        Reason.INSUFFICIENT_BALANCE,
        Reason.NOT_MEMBER,
        Reason.CLOCK_SKEW,
        Reason.BUFFER_FULL,
        # compute payment channels: they wait on the checker's clock
        Reason.CHANNEL_NOT_EXPIRED,
        Reason.EXPIRY_TOO_FAR,
        # governance: the checker's clock has not reached the close yet
        Reason.VOTING_OPEN,
    }
)


def is_final(reason: Reason) -> bool:
    """Whether a validator's refusal for ``reason`` holds for good (see the
    module docstring): everything not in :data:`STALE_STATE`."""
    return reason not in STALE_STATE


@dataclass(frozen=True, slots=True)
class NeedChain:
    """The checker has the author's chain up to ``after_seq``; it needs the
    certified entries after that, up to and including ``through`` (an id)."""

    author: bytes
    after_seq: int
    through: bytes


@dataclass(frozen=True, slots=True)
class NeedAdmission:
    """The checker has not seen ``account`` admitted; it needs the certificate
    of a ``member.admit`` for it."""

    account: bytes


@dataclass(frozen=True, slots=True)
class NeedCertificate:
    """The checker needs the certified entry with this id."""

    id: bytes


Need = NeedChain | NeedAdmission | NeedCertificate


class Refused(Exception):
    """Raised by decoders, verifiers and rule checks. Carries a :class:`Reason`.

    ``detail`` is for humans and may name a field; it never contains key
    material beyond public keys and ids.
    """

    __slots__ = ("detail", "needs", "reason")

    def __init__(self, reason: Reason, detail: str = "", needs: tuple[Need, ...] = ()) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        self.needs = needs

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.reason, self.detail, self.needs)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer of ``ledger.check``: ok when ``reason`` is None.

    A refusal with ``needs`` is curable: supply what is needed and ask again.
    """

    reason: Reason | None = None
    detail: str = ""
    needs: tuple[Need, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason is None


#: The one accepting verdict.
OK = Verdict()
