"""The compute channel entry kinds: ``channel.open``, ``channel.close``,
``channel.refund`` — their checks, effects and lock resources.

Why this exists: a payment channel (DESIGN §6) touches two chains — the
consumer's, which opens and may refund, and the provider's, which closes —
and must pay out its escrow exactly once, whatever order nodes apply the
certificates in. These are its three rules; the bodies, vouchers, releases
and records they use are in ``channels.py``, the contract in
``docs/compute.md``. Channels work in every economy kind.

Theory of operation
-------------------

The commutativity rule (DESIGN §4), kind by kind:

* **open** (consumer's chain) debits only the author — within its credit
  limit, as a transfer does — and writes the channel fact (``channels``:
  ``fact/channel/<open id>``). The escrow is then in no account: the
  economy's sum counts it in the channel until it is settled.
* **close** (provider's chain) reads the channel fact — a monotonic fact
  of another author: a checker that has not applied the open answers
  ``missing`` with the open's id, and the submitter attaches it. Its
  effects read nothing but the body: they credit the author ``amount`` and
  the consumer ``escrow - amount`` (the body's checked copies), so a node
  that applies the close before the open gets the same state once both are
  applied. No clock: a provider may close at any time until a refund wins.
* **refund** (consumer's chain) reads the channel fact, which its own chain
  wrote (absent: ``channel_unknown``, final), credits the provider the
  release's ``final`` (0 without one) and the author the rest. Without a
  release it needs the checker's clock past ``expiry_ms +
  REFUND_SKEW_MS``; with one, none. Clocks are read in ``check`` only
  (``Context.now``); ``effects`` cannot (an apply context has no clock).
* close and refund both consume the resource ``("channel", id)``: an
  honest validator votes for at most one of them, two quorums share an
  honest validator, so exactly one settlement is ever certified — in
  particular no second close with an older voucher after one is
  certified. A checker that has applied the settlement refuses the other
  with ``channel_settled``; one that has not still holds the lock.
* the settlement fact (``fact/channel-settled/<id>``) records which entry
  ended the channel; a faulty quorum's second settlement keeps the smaller
  entry id (both pay: balances are sums, so every node still agrees).

=================  =================================================================
kind               refusals (besides ``malformed_body``, ``amount_out_of_range``)
=================  =================================================================
``channel.open``   ``malformed_body`` (a channel to oneself), ``bad_key``
                   (provider), ``expiry_past``, ``not_member`` (consumer or
                   provider, with a NeedAdmission), ``expiry_too_far``,
                   ``insufficient_balance``
``channel.close``  ``missing`` (the open not applied here), ``not_provider``,
                   ``channel_mismatch``, ``channel_settled``,
                   ``voucher_over_escrow``, ``voucher_bad_sig``,
                   ``balance_overflow``; lock ``("channel", id)``
``channel.refund`` ``channel_unknown``, ``not_consumer``, ``channel_mismatch``,
                   ``channel_settled``, ``release_over_escrow``,
                   ``release_bad_sig``, ``channel_not_expired`` (no release),
                   ``balance_overflow``; lock ``("channel", id)``
=================  =================================================================
"""

from __future__ import annotations

from typing import Any

from mycelia.protocol import keys
from mycelia.protocol.channels import (
    CHANNEL_FACT,
    SETTLED_FACT,
    ChannelClose,
    ChannelOpen,
    ChannelRecord,
    ChannelRefund,
    Settlement,
    channel_state,
    check_release,
    check_voucher,
    require_unsettled,
)
from mycelia.protocol.context import Context, Kind
from mycelia.protocol.reasons import NeedCertificate, Reason, Refused

__all__ = ["ChannelCloseRule", "ChannelOpenRule", "ChannelRefundRule"]


def _did(key: bytes) -> str:
    return keys.did_encode(key)


def _mismatch(what: str, body: Any, held: Any) -> Refused:
    return Refused(
        Reason.CHANNEL_MISMATCH, f"the body's {what} {body!r} is not the channel's {held!r}"
    )


def _settle(ctx: Context, channel: bytes, to_provider: int, to_consumer: int) -> None:
    """Write the settlement fact; only a faulty quorum can certify a second
    settlement (they share the channel lock): keep the smaller entry id so
    every node agrees whatever the order."""
    raw = ctx.fact(SETTLED_FACT, channel)
    if raw is None or ctx.entry_id < Settlement.decode(raw).entry:
        record = Settlement(ctx.entry_id, ctx.entry.kind, to_provider, to_consumer)
        ctx.put_fact(SETTLED_FACT, channel, record.encode())


# -- channel.open ---------------------------------------------------------------------------


class ChannelOpenRule(Kind):
    name = ChannelOpen.kind

    @staticmethod
    def parse(raw: Any) -> ChannelOpen:
        return ChannelOpen.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        if b.provider == e.author:
            raise Refused(Reason.MALFORMED_BODY, "a channel to oneself")
        keys.check_public_key(b.provider, "provider")
        now = ctx.now()
        if b.expiry_ms <= now:
            raise Refused(Reason.EXPIRY_PAST, f"expiry {b.expiry_ms} is not after {now}")
        ctx.require_member(e.author, "consumer")
        ctx.require_member(b.provider, "provider")
        most = ctx.economy.max_channel_ms
        if b.expiry_ms > now + most:
            raise Refused(
                Reason.EXPIRY_TOO_FAR,
                f"expiry {b.expiry_ms} is more than max_channel_ms {most} past {now}",
            )
        ctx.require_debit(e.author, b.amount)

    @staticmethod
    def effects(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        ctx.add_balance(e.author, -b.amount)
        record = ChannelRecord(e.author, b.provider, b.amount, b.expiry_ms, b.offer)
        ctx.put_fact(CHANNEL_FACT, ctx.entry_id, record.encode())


# -- channel.close --------------------------------------------------------------------------


class ChannelCloseRule(Kind):
    name = ChannelClose.kind

    @staticmethod
    def accounts(entry: Any) -> tuple[bytes, ...]:
        body = entry.body
        return (entry.author, body.consumer) if body.rest > 0 else (entry.author,)

    @staticmethod
    def parse(raw: Any) -> ChannelClose:
        return ChannelClose.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        channel = channel_state(ctx, b.channel)
        if channel is None:
            raise Refused(
                Reason.MISSING,
                f"channel {b.channel.hex()} is not open here (its channel.open is not applied)",
                (NeedCertificate(b.channel),),
            )
        if e.author != channel.provider:
            raise Refused(
                Reason.NOT_PROVIDER,
                f"channel {b.channel.hex()} is {_did(channel.provider)}'s, not the author's",
            )
        if b.consumer != channel.consumer:
            raise _mismatch("consumer", _did(b.consumer), _did(channel.consumer))
        if b.escrow != channel.amount:
            raise _mismatch("escrow", b.escrow, channel.amount)
        check_voucher(e.economy, channel, b.voucher(e.economy))
        ctx.require_credit(e.author, b.amount)
        ctx.require_credit(b.consumer, b.rest)

    @staticmethod
    def effects(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        ctx.add_balance(e.author, b.amount)
        if b.rest > 0:
            ctx.add_balance(b.consumer, b.rest)
        _settle(ctx, b.channel, b.amount, b.rest)

    @staticmethod
    def resources(entry: Any) -> tuple[tuple[Any, ...], ...]:
        return (("channel", entry.body.channel),)


# -- channel.refund -------------------------------------------------------------------------


class ChannelRefundRule(Kind):
    name = ChannelRefund.kind

    @staticmethod
    def accounts(entry: Any) -> tuple[bytes, ...]:
        body = entry.body
        paid = body.to_provider > 0
        return (entry.author, body.provider) if paid else (entry.author,)

    @staticmethod
    def parse(raw: Any) -> ChannelRefund:
        return ChannelRefund.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        # The consumer's open is in its own chain, applied up to this entry:
        # absent means the author opened no such channel.
        channel = channel_state(ctx, b.channel)
        if channel is None:
            raise Refused(Reason.CHANNEL_UNKNOWN, f"no channel {b.channel.hex()} is open")
        if e.author != channel.consumer:
            raise Refused(
                Reason.NOT_CONSUMER,
                f"channel {b.channel.hex()} was opened by {_did(channel.consumer)}",
            )
        if b.provider != channel.provider:
            raise _mismatch("provider", _did(b.provider), _did(channel.provider))
        if b.escrow != channel.amount:
            raise _mismatch("escrow", b.escrow, channel.amount)
        if b.release is not None:
            check_release(e.economy, channel, b.release.signed(e.economy, b.channel))
        else:
            require_unsettled(channel)
            now = ctx.now()
            if now <= channel.refund_after_ms:
                raise Refused(
                    Reason.CHANNEL_NOT_EXPIRED,
                    f"the channel may be refunded without a release after "
                    f"{channel.refund_after_ms} (expiry + skew); the clock is {now}",
                )
        ctx.require_credit(b.provider, b.to_provider)
        ctx.require_credit(e.author, b.rest)

    @staticmethod
    def effects(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        if b.to_provider > 0:
            ctx.add_balance(b.provider, b.to_provider)
        if b.rest > 0:
            ctx.add_balance(e.author, b.rest)
        _settle(ctx, b.channel, b.to_provider, b.rest)

    @staticmethod
    def resources(entry: Any) -> tuple[tuple[Any, ...], ...]:
        return (("channel", entry.body.channel),)
