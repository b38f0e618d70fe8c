"""The closer: settles every channel this provider holds a voucher of with
``channel.close`` and the newest voucher, and survives restarts.

Why this exists: a provider is paid only when a close with the consumer's
voucher is certified, and it is safe only while it closes before the
channel expires (after that the consumer may refund: ``docs/compute.md``,
"Trust model"). Vouchers are in the store (``store/compute.py``), so the
closer works from there: whatever the node was doing when it stopped, at
the next start every channel with a held voucher and no settlement is
closed — jobs do not survive a restart, so none of them pays a job any
more.

How it works:

* Work comes from :meth:`Closer.close` (the provider, when a job ended and
  its final voucher came or waited long enough), from the store at start,
  and from a sweep every :data:`SWEEP_S` of the held vouchers no running
  job uses (``busy`` says which are).
* One close at a time, as the attester does, because each is an entry on
  this node's own chain: the body is ``ChannelClose.of(channel, voucher)``
  (``protocol/channels.py``), the entry the node key's next one on the
  chain as the store has it, signed, **recorded in the voucher's row
  before it is submitted** (so a restart resubmits that very entry rather
  than a second one in the same chain slot), then submitted through the
  node's submitter and waited for.
* Certified, or refused because the channel is settled (the consumer's
  refund won the race, or a close certified elsewhere): the row is
  forgotten and the settlement counted by its kind. Refused for a reason
  that another entry can cure (the chain slot taken by another entry of
  this node's): the recorded entry is dropped and the close built afresh
  on the next round. Refused for a reason that depends on the validators'
  state: asked again on the next round, the same entry.
* A settlement applied by gossip or sync for a channel it holds (the
  applier's listener) forgets the row too.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

import trio

from mycelia.node.applier import Applier
from mycelia.node.store import Store
from mycelia.node.submitter import CERTIFIED, Submitter
from mycelia.protocol import Certificate, SignedEntry, SigningKey, channel_state
from mycelia.protocol.channels import ChannelClose, ChannelRefund, ChannelState
from mycelia.protocol.ledger import next_entry
from mycelia.protocol.reasons import Reason, Refused, is_final

__all__ = ["SWEEP_S", "Closer"]

log = logging.getLogger("mycelia.compute")

#: Seconds between two looks at every held voucher (closes that failed,
#: and any a running job no longer uses).
SWEEP_S = 30.0
#: Seconds before a close that could not go through is tried again.
RETRY_S = 5.0


class Closer:
    """Closes channels with the newest voucher held (see the module docstring)."""

    def __init__(
        self,
        key: SigningKey,
        store: Store,
        applier: Applier,
        submitter: Submitter,
        *,
        busy: Callable[[bytes], bool] = lambda _channel: False,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.key = key
        self.store = store
        self.applier = applier
        self.submitter = submitter
        self._busy = busy
        self._wall_ms = wall_ms
        self._queue: dict[bytes, None] = {}
        self._current: bytes | None = None
        self._wake = trio.Event()
        #: plain counters (metrics): settlements by kind, closes submitted
        self.settlements: Counter[str] = Counter()
        self.submitted = 0
        applier.on_applied(self._on_applied)

    def close(self, channel: bytes) -> None:
        """Close ``channel`` with the newest voucher held, soon."""
        self._queue[channel] = None
        self._wake.set()

    def closing(self, channel: bytes) -> bool:
        """Whether a close of ``channel`` is queued or under way."""
        return channel in self._queue or channel == self._current

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Close every channel held at start, then whatever comes."""
        for channel in await trio.to_thread.run_sync(self.store.held_vouchers):
            self._queue[channel] = None
        task_status.started()
        next_sweep = trio.current_time() + SWEEP_S
        while True:
            while self._queue:
                channel = next(iter(self._queue))
                del self._queue[channel]
                self._current = channel
                try:
                    retry = not await self._close(channel)
                finally:
                    self._current = None
                if retry:
                    break  # the rest next round: the chain or the validators need time
            with trio.move_on_at(min(next_sweep, trio.current_time() + RETRY_S)):
                await self._wake.wait()
            self._wake = trio.Event()
            if trio.current_time() >= next_sweep:
                next_sweep = trio.current_time() + SWEEP_S
                for channel in self.store.held_vouchers():
                    if not self._busy(channel):
                        self._queue[channel] = None

    async def _close(self, channel: bytes) -> bool:
        """One attempt; False to try again later (the channel is queued again)."""
        held = self.store.held_voucher(channel)
        if held is None:
            return True
        economy = self.applier.economies.get(held.economy)
        state = channel_state(lambda k: self.store.record(held.economy, k), channel)
        if economy is None or state is None:
            log.warning("channel %s: not known here; its close waits", channel.hex()[:16])
            self._queue[channel] = None
            return False
        if state.settlement is not None:
            await self._forget(state)
            return True
        if held.closing:
            signed = SignedEntry.decode(held.closing)
        else:
            body = ChannelClose.of(state, held.voucher)
            head = self.store.account(economy.id, self.key.public)
            signed = next_entry(economy.id, self.key.public, head, body, self._wall_ms()).sign(
                self.key
            )
            await trio.to_thread.run_sync(self.store.begin_close_sync, channel, signed.encode())
        try:
            await self.submitter.submit(signed)
        except Refused as exc:
            return await self._refused(state, exc.reason, exc.detail, final=is_final(exc.reason))
        self.submitted += 1
        status = await self.submitter.wait(signed.id)
        if status.state == CERTIFIED:
            log.info(
                "channel %s closed: %d to this provider",
                channel.hex()[:16],
                held.amount,
            )
            settled = channel_state(lambda k: self.store.record(held.economy, k), channel)
            await self._forget(settled or state)
            return True
        reason = status.reason or Reason.MALFORMED
        return await self._refused(state, reason, status.detail, final=status.final)

    async def _refused(
        self, state: ChannelState, reason: Reason, detail: str, *, final: bool
    ) -> bool:
        channel = state.id
        if reason == Reason.CHANNEL_SETTLED:
            settled = self._state(channel)
            await self._forget(settled or state)
            return True
        log.warning("channel %s: close refused: %s %s", channel.hex()[:16], reason.value, detail)
        if final:
            # Another entry took the chain slot (or the close was malformed):
            # build it afresh next time.
            await trio.to_thread.run_sync(self.store.abort_close_sync, channel)
        self._queue[channel] = None
        return False

    def _state(self, channel: bytes) -> ChannelState | None:
        held = self.store.held_voucher(channel)
        if held is None:
            return None
        return channel_state(lambda k: self.store.record(held.economy, k), channel)

    async def _forget(self, state: ChannelState) -> None:
        await trio.to_thread.run_sync(self.store.forget_voucher_sync, state.id)
        kind = "unknown" if state.settlement is None else state.settlement.kind
        self.settlements[kind.removeprefix("channel.")] += 1

    def _on_applied(self, economy_id: bytes, certs: tuple[Certificate, ...]) -> None:
        """A settlement of a held channel came in: close no more (the row goes
        when the closer next looks at it). Called by the applier, the node's
        one writer: lookups only, and never raises into it."""
        try:
            for cert in certs:
                if cert.entry.kind not in (ChannelClose.kind, ChannelRefund.kind):
                    continue
                channel = cert.entry.body.channel
                known = channel in self._queue or channel == self._current
                if not known and self.store.held_voucher(channel) is not None:
                    self._queue[channel] = None
                    self._wake.set()
        except Exception:
            log.exception("the closer's look at applied settlements failed")
