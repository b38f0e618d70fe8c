"""Entry kinds: each kind's body schema and rules, in one place per kind.

Why this exists: ``kind`` in an entry names a rule, and ``body`` is an array
whose schema that rule owns (DESIGN §4). Every kind here is one class with
four parts — ``parse`` (wire → typed body), ``check`` (what a validator runs
before voting), ``effects`` (what every node runs when the certificate is
applied) and ``resources`` (what the entry consumes exclusively, beyond the
author's seq). ``ledger.py`` runs the parts common to all kinds (signature,
seq, prev, timestamps) and dispatches here.

Theory of operation (the commutativity rule): ``effects`` may debit or
consume only what the *author* owns; it may credit anyone; it may read
another account only for monotonic facts (admission). Credits commute, own
debits are ordered by the author's chain, and admission and credit limits are
merged order-independently (see ``state.py``), so applying certificates in
any interleaving across authors gives the same state. ``effects`` never
refuses: the certificate is final. ``check`` refuses conservatively: a stale
view only hides credits and admissions, and an unseen admission is answered
with ``not_member`` plus a :class:`NeedAdmission` the submitter can satisfy.

The rule context and the ``Kind`` base live in ``context.py``; the sensor
kinds (``device.register``, ``sensor.attest``, ``impact.claim``) in
``impact.py``, their bodies in ``sensor_bodies.py``; the compute channel
kinds (``channel.open``, ``channel.close``, ``channel.refund``) in
``channel_kinds.py``, their bodies in ``channels.py``; the governance kinds
(``gov.propose``, ``gov.vote``, ``gov.delegate``, ``gov.object``,
``gov.enact``) in ``governance.py``, their bodies in ``gov_bodies.py``.
:data:`KINDS` here is the one registry of all of them.

The foundation kinds and their bodies:

============  ============================  =========================================
kind          body                          rule
============  ============================  =========================================
transfer      [to, amount, memo]            debit author within its credit limit
                                            (0 in issued and impact economies),
                                            credit ``to``; both must be members;
                                            ``to != author``
mint          [to, amount, memo]            issued economies; author is an issuer and
                                            its own minted total stays within its cap
burn          [amount]                      issued and impact economies; debit
                                            author to >= 0
member.admit  [member]                      approved membership; author is a steward
credit.set    [member, limit]               mutual credit; author is a steward; the
                                            member's limit becomes ``limit`` (binds
                                            debits checked after it is applied)
============  ============================  =========================================

Amounts are integers in minor units, 1 … 2**63-1; limits 0 … 2**63-1; memos
at most 256 bytes of UTF-8. A balance never leaves the signed 64-bit range:
a credit that would is refused at check (``balance_overflow``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mycelia.protocol import keys, schema
from mycelia.protocol.channel_kinds import ChannelCloseRule, ChannelOpenRule, ChannelRefundRule
from mycelia.protocol.channels import ChannelClose, ChannelOpen, ChannelRefund
from mycelia.protocol.context import Context, Kind, replace_account
from mycelia.protocol.economy import IMPACT, ISSUED, MEMBERSHIP_APPROVED, MUTUAL_CREDIT
from mycelia.protocol.electorate import note_admission
from mycelia.protocol.gov_bodies import GovDelegate, GovEnact, GovObject, GovPropose, GovVote
from mycelia.protocol.governance import (
    GovDelegateRule,
    GovEnactRule,
    GovObjectRule,
    GovProposeRule,
    GovVoteRule,
)
from mycelia.protocol.impact import DeviceRegisterRule, ImpactClaimRule, SensorAttestRule
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.sensor_bodies import DeviceRegister, ImpactClaim, SensorAttest

__all__ = [
    "KINDS",
    "MAX_MEMO_BYTES",
    "Burn",
    "ChannelClose",
    "ChannelOpen",
    "ChannelRefund",
    "Context",
    "CreditSet",
    "DeviceRegister",
    "GovDelegate",
    "GovEnact",
    "GovObject",
    "GovPropose",
    "GovVote",
    "ImpactClaim",
    "Kind",
    "MemberAdmit",
    "Mint",
    "SensorAttest",
    "Transfer",
    "entry_accounts",
]

MAX_MEMO_BYTES = 256
_B = Reason.MALFORMED_BODY


_replace = replace_account


def _amount(value: Any, name: str = "amount") -> int:
    if type(value) is not int:
        raise Refused(_B, f"{name}: expected an integer")
    if not 1 <= value <= schema.INT64_MAX:
        raise Refused(Reason.AMOUNT_OUT_OF_RANGE, f"{name} {value} not in [1, 2**63 - 1]")
    return value


def _body(value: Any, n: int, kind: str) -> list[Any]:
    return schema.list_(value, f"{kind} body", min_len=n, max_len=n, reason=_B)


def _key(value: Any, name: str) -> bytes:
    return schema.bytes_(value, name, 32, reason=_B)


def _memo(value: Any) -> str:
    return schema.str_(value, "memo", max_bytes=MAX_MEMO_BYTES, reason=_B)


# -- transfer -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Payment:
    """The ``[to, amount, memo]`` body shared by transfer and mint."""

    to: bytes
    amount: int
    memo: str = ""

    def __post_init__(self) -> None:
        _key(self.to, "to")
        _amount(self.amount)
        _memo(self.memo)

    def to_wire(self) -> list[Any]:
        return [self.to, self.amount, self.memo]


@dataclass(frozen=True, slots=True)
class Transfer(_Payment):
    kind: ClassVar[str] = "transfer"


class TransferRule(Kind):
    name = "transfer"

    @staticmethod
    def accounts(entry: Any) -> tuple[bytes, ...]:
        return (entry.author, entry.body.to)

    @staticmethod
    def parse(raw: Any) -> Transfer:
        return Transfer(*_body(raw, 3, "transfer"))

    @staticmethod
    def check(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        if b.to == e.author:
            raise Refused(_B, "transfer to self")
        keys.check_public_key(b.to, "to")
        ctx.require_member(e.author, "author")
        ctx.require_member(b.to, "recipient")
        ctx.require_debit(e.author, b.amount)
        ctx.require_credit(b.to, b.amount)

    @staticmethod
    def effects(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        ctx.add_balance(e.author, -b.amount)
        ctx.add_balance(b.to, b.amount)


# -- mint -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mint(_Payment):
    kind: ClassVar[str] = "mint"


class MintRule(Kind):
    name = "mint"

    @staticmethod
    def accounts(entry: Any) -> tuple[bytes, ...]:
        return (entry.author, entry.body.to)

    @staticmethod
    def parse(raw: Any) -> Mint:
        return Mint(*_body(raw, 3, "mint"))

    @staticmethod
    def check(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        ctx.require_kind(ISSUED, "mint")
        cap = ctx.economy.issuers.get(e.author)
        if cap is None:
            raise Refused(Reason.NOT_ISSUER, f"{keys.did_encode(e.author)} is not an issuer")
        minted = ctx.get(e.author).minted
        if minted + b.amount > cap:
            raise Refused(Reason.CAP_EXCEEDED, f"minted {minted} + {b.amount} > cap {cap}")
        keys.check_public_key(b.to, "to")
        ctx.require_member(b.to, "recipient")
        ctx.require_credit(b.to, b.amount)

    @staticmethod
    def effects(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        issuer = ctx.get(e.author)
        ctx.put(e.author, _replace(issuer, minted=issuer.minted + b.amount))
        ctx.add_balance(b.to, b.amount)


# -- burn -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Burn:
    kind: ClassVar[str] = "burn"
    amount: int

    def __post_init__(self) -> None:
        _amount(self.amount)

    def to_wire(self) -> list[Any]:
        return [self.amount]


class BurnRule(Kind):
    name = "burn"

    @staticmethod
    def parse(raw: Any) -> Burn:
        return Burn(*_body(raw, 1, "burn"))

    @staticmethod
    def check(ctx: Context) -> None:
        # Impact credits are retired the same way issued money is.
        if ctx.economy.kind not in (ISSUED, IMPACT):
            raise Refused(
                Reason.NOT_ALLOWED, f"burn is not allowed in a {ctx.economy.kind} economy"
            )
        ctx.require_debit(ctx.entry.author, ctx.entry.body.amount)

    @staticmethod
    def effects(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        acct = ctx.get(e.author)
        ctx.put(
            e.author, _replace(acct, balance=acct.balance - b.amount, burned=acct.burned + b.amount)
        )


# -- member.admit ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberAdmit:
    kind: ClassVar[str] = "member.admit"
    member: bytes

    def __post_init__(self) -> None:
        _key(self.member, "member")

    def to_wire(self) -> list[Any]:
        return [self.member]


def _require_steward(ctx: Context, what: str) -> None:
    if ctx.entry.author not in ctx.economy.stewards:
        raise Refused(
            Reason.NOT_STEWARD, f"{what}: {keys.did_encode(ctx.entry.author)} is not a steward"
        )


class MemberAdmitRule(Kind):
    name = "member.admit"

    @staticmethod
    def accounts(entry: Any) -> tuple[bytes, ...]:
        return (entry.author, entry.body.member)

    @staticmethod
    def parse(raw: Any) -> MemberAdmit:
        return MemberAdmit(*_body(raw, 1, "member.admit"))

    @staticmethod
    def check(ctx: Context) -> None:
        if ctx.economy.membership != MEMBERSHIP_APPROVED:
            raise Refused(Reason.NOT_ALLOWED, "member.admit needs approved membership")
        _require_steward(ctx, "member.admit")
        member = ctx.entry.body.member
        keys.check_public_key(member, "member")
        if ctx.economy.is_member_by_policy(member) or ctx.get(member).admitted:
            raise Refused(Reason.ALREADY_MEMBER, f"{keys.did_encode(member)} is already a member")

    @staticmethod
    def effects(ctx: Context) -> None:
        member = ctx.entry.body.member
        note_admission(ctx, member)  # the electorate's records (electorate.py)
        acct = ctx.get(member)
        if not acct.admitted or ctx.entry_id < acct.admitted:
            ctx.put(member, _replace(acct, admitted=ctx.entry_id))


# -- credit.set -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreditSet:
    kind: ClassVar[str] = "credit.set"
    member: bytes
    limit: int

    def __post_init__(self) -> None:
        _key(self.member, "member")
        if type(self.limit) is not int:
            raise Refused(_B, "limit: expected an integer")
        if not 0 <= self.limit <= schema.INT64_MAX:
            raise Refused(Reason.AMOUNT_OUT_OF_RANGE, f"limit {self.limit} not in [0, 2**63 - 1]")

    def to_wire(self) -> list[Any]:
        return [self.member, self.limit]


class CreditSetRule(Kind):
    name = "credit.set"

    @staticmethod
    def accounts(entry: Any) -> tuple[bytes, ...]:
        return (entry.author, entry.body.member)

    @staticmethod
    def parse(raw: Any) -> CreditSet:
        return CreditSet(*_body(raw, 2, "credit.set"))

    @staticmethod
    def check(ctx: Context) -> None:
        ctx.require_kind(MUTUAL_CREDIT, "credit.set")
        _require_steward(ctx, "credit.set")
        member = ctx.entry.body.member
        keys.check_public_key(member, "member")
        ctx.require_member(member, "member")

    @staticmethod
    def effects(ctx: Context) -> None:
        e = ctx.entry
        member = e.body.member
        acct = ctx.get(member)
        stamp = (e.ts_ms, ctx.entry_id, e.body.limit)
        if acct.limit_set is None or stamp[:2] > acct.limit_set[:2]:
            ctx.put(member, _replace(acct, limit_set=stamp))


#: kind name -> rule. The one registry; ``entries.py`` parses bodies through it.
KINDS: dict[str, type[Kind]] = {
    rule.name: rule
    for rule in (
        TransferRule,
        MintRule,
        BurnRule,
        MemberAdmitRule,
        CreditSetRule,
        DeviceRegisterRule,
        SensorAttestRule,
        ImpactClaimRule,
        # compute payment channels (channel_kinds.py)
        ChannelOpenRule,
        ChannelCloseRule,
        ChannelRefundRule,
        # governance and epochs (governance.py)
        GovProposeRule,
        GovVoteRule,
        GovDelegateRule,
        GovObjectRule,
        GovEnactRule,
    )
}


def entry_accounts(entry: Any) -> tuple[bytes, ...]:
    """Every account whose state ``entry``'s certificate changes, the author
    first: what a node indexes its history under and notifies about. Kind
    rules declare it (:meth:`Kind.accounts`); the property tests hold it
    equal to the accounts ``effects`` really change."""
    return KINDS[entry.kind].accounts(entry)
