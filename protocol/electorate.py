"""A proposal's electorate: who may vote on it, and how many members there are.

Why this exists: DESIGN §7 lets only "members admitted before the proposal"
vote, and ``majority`` has a participation quorum relative to the member
count in force. Neither can be read off an :class:`~mycelia.protocol.state.Account`
(it holds the admitting entry's id, not when it happened, and nothing counts
accounts), so ``member.admit`` keeps two more records, here, written by its
effects and merged order-independently:

* fact ``admission/<member>`` — the earliest ``ts_ms`` of the member's
  admissions (two stewards may both admit one member; the minimum is the
  same in every order);
* counter ``members`` — admitted accounts, counted once each (when the
  account's first admission is applied, whichever that is).

The rules:

* **Eligible** for proposal *p*: a steward or issuer in the policy of *p*'s
  epoch, or an account admitted (``Account.admitted``) with an admission
  timestamp before *p*'s ``ts_ms``. An account this checker has not seen
  admitted is ``not_member`` with a ``NeedAdmission`` when admissions exist
  (approved membership: the submitter attaches it), else ``not_eligible``.
  In an open economy anyone may transact but only the stewards and issuers
  (and accounts admitted while membership was approved) govern: keys are
  free, votes must not be.
* **Member count**: the stewards and issuers in force plus the ``members``
  counter. A validator's count is a lower bound (it may not have applied
  every admission yet); a ``majority`` proposal states its electorate and
  validators refuse one below what they count (``tally_mismatch``), so the
  stated electorate is at least what an honest validator of the certifying
  quorum counted.

Stores written before these records existed hold admissions without them:
:func:`admission_records` gives what a node migration writes for those (the
admissions' timestamps are in their certificates). An admitted account with
no admission fact counts as admitted at time 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.context import Context
from mycelia.protocol.economy import MEMBERSHIP_APPROVED, Economy
from mycelia.protocol.gov_bodies import ProposalRecord
from mycelia.protocol.reasons import NeedAdmission, Reason, Refused
from mycelia.protocol.state import counter_key, encode_count, fact_key

__all__ = [
    "ADMISSION_FACT",
    "MEMBERS_COUNTER",
    "admission_records",
    "check_eligible",
    "member_count",
    "note_admission",
    "policy_members",
]

ADMISSION_FACT = "admission"
MEMBERS_COUNTER = "members"


def _encode_ts(ts_ms: int) -> bytes:
    return codec.encode_trusted(ts_ms)


def _decode_ts(raw: bytes) -> int:
    return schema.int_(codec.decode(raw, max_size=16), "admission ts", 0)


def note_admission(ctx: Context, member: bytes) -> None:
    """``member.admit``'s governance records (module docstring); called by
    its effects before the account's ``admitted`` is written."""
    if not ctx.get(member).admitted:
        ctx.add_count(MEMBERS_COUNTER, 1)
    raw = ctx.fact(ADMISSION_FACT, member)
    if raw is None or ctx.entry.ts_ms < _decode_ts(raw):
        ctx.put_fact(ADMISSION_FACT, member, _encode_ts(ctx.entry.ts_ms))


def admission_records(admissions: Iterable[tuple[bytes, int]]) -> dict[bytes, bytes]:
    """The records for ``(member, ts_ms)`` admissions applied before these
    records existed (a store migration): the earliest ts per member and
    the count of distinct members."""
    earliest: dict[bytes, int] = {}
    for member, ts in admissions:
        earliest[member] = min(ts, earliest.get(member, ts))
    out = {fact_key(ADMISSION_FACT, m): _encode_ts(ts) for m, ts in earliest.items()}
    out[counter_key(MEMBERS_COUNTER)] = encode_count(len(earliest))
    return out


def policy_members(economy: Economy) -> frozenset[bytes]:
    """The members by policy that govern: stewards and issuers."""
    return economy.stewards | frozenset(economy.issuers)


def member_count(economy: Economy, ctx: Context) -> int:
    """The member count in force as this checker knows it (a lower bound)."""
    return len(policy_members(economy)) + ctx.count(MEMBERS_COUNTER)


def check_eligible(ctx: Context, account: bytes, proposal: ProposalRecord, who: str) -> None:
    """Raise unless ``account`` is in ``proposal``'s electorate."""
    at = ctx.economy.at(proposal.epoch)
    if account in policy_members(at):
        return
    name = keys.did_encode(account)
    if not ctx.get(account).admitted:
        if MEMBERSHIP_APPROVED in (at.membership, ctx.economy.membership):
            raise Refused(
                Reason.NOT_MEMBER,
                f"{who} {name} is not known here to be admitted",
                (NeedAdmission(account),),
            )
        raise Refused(Reason.NOT_ELIGIBLE, f"{who} {name} is not a steward, issuer or admitted")
    raw = ctx.fact(ADMISSION_FACT, account)
    admitted_ts = 0 if raw is None else _decode_ts(raw)
    if admitted_ts >= proposal.ts_ms:
        raise Refused(
            Reason.NOT_ELIGIBLE,
            f"{who} {name} was admitted at {admitted_ts}, not before the proposal "
            f"({proposal.ts_ms})",
        )
