"""Subscriptions: which WebSockets watch which accounts, entries, forks and
relayed compute jobs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from mycelia.api import types
from mycelia.api.codecs import Json
from mycelia.node.jsonrpc import (
    encode,
)
from mycelia.node.submitter import PENDING, Status
from mycelia.node.views import status_view
from mycelia.protocol import (
    Certificate,
    ForkEvidence,
    entry_accounts,
)

if TYPE_CHECKING:  # the daemon imports the RPC
    from mycelia.node.compute.relay import Relayed
    from mycelia.node.daemon import Node

log = logging.getLogger("mycelia.rpc")

#: Messages a WebSocket's outbox holds before a notification closes it.
OUTBOX_SIZE = 1024
#: WebSocket close codes (RFC 6455 §7.4.1).
WS_NORMAL_CLOSURE = 1000
WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013
# -- subscriptions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Subscription:
    id: str
    session: Session
    topic: str
    #: (economy, account) for an account subscription, (entry id,) for an entry
    #: one, (economy,) for a forks one, (job id,) for a job one
    key: tuple[bytes, ...] = ()


class Session:
    """One WebSocket: its subscriptions and its bounded outbox.

    ``notify`` is called from synchronous callbacks and never blocks: when
    the outbox is full the session is marked ``overflowed`` and its scope
    cancelled, which ends the connection (1008). ``active_at`` is when it
    last did something (a message came, an answer was queued, a
    subscription ended), for the idle timeout of :meth:`RpcServer._ws_idle`."""

    def __init__(self, hub: Hub, outbox_size: int) -> None:
        self.hub = hub
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox, self.outbox_out = trio.open_memory_channel[str](outbox_size)
        self.scope = trio.CancelScope()
        self.overflowed = False
        #: the close code and reason once the server has ended the session
        self.closing: tuple[int, str] | None = None
        self.active_at = trio.current_time()
        self._issued = 0
        self._held: list[str] | None = None

    def touch(self) -> None:
        self.active_at = trio.current_time()

    @property
    def busy(self) -> bool:
        """Whether a message is being answered."""
        return self._held is not None

    def close(self, code: int, reason: str) -> None:
        """End the connection (from any task): its scope is cancelled, then
        the server closes the WebSocket with ``code``."""
        if self.closing is None:
            self.closing = (code, reason)
        self.scope.cancel()

    # -- subscriptions
    def new_subscription(self, topic: str, key: tuple[bytes, ...] = ()) -> Subscription:
        self._issued += 1
        sub = Subscription(f"0x{self._issued:x}", self, topic, key)
        self.subscriptions[sub.id] = sub
        return sub

    def issued(self, sub_id: str) -> bool:
        """Whether ``sub_id`` was ever given to this session (ended or not)."""
        if not sub_id.startswith("0x") or not 2 < len(sub_id) <= 18:
            return False
        try:
            n = int(sub_id[2:], 16)
        except ValueError:
            return False
        return f"0x{n:x}" == sub_id and 1 <= n <= self._issued

    def end(self, sub: Subscription) -> None:
        self.subscriptions.pop(sub.id, None)
        self.touch()  # the idle time counts from the last subscription's end

    # -- the outbox
    def notify(self, sub_id: str, result: Json) -> None:
        if self.overflowed:
            return
        text = encode(
            {
                "jsonrpc": "2.0",
                "method": "subscription",
                "params": {"subscription": sub_id, "result": result},
            }
        )
        if self._held is not None:
            used = self.outbox.statistics().current_buffer_used
            if used + len(self._held) >= self.outbox.statistics().max_buffer_size:
                self._overflow()
            else:
                self._held.append(text)
            return
        self._push(text)

    def _push(self, text: str) -> None:
        try:
            self.outbox.send_nowait(text)
        except trio.WouldBlock:
            self._overflow()
        except trio.ClosedResourceError:
            pass  # the connection is ending

    def _overflow(self) -> None:
        queued = self.outbox.statistics().current_buffer_used
        log.info("closing a WebSocket that reads too slowly (%d messages queued)", queued)
        self.overflowed = True
        self.close(WS_POLICY_VIOLATION, "too slow: notifications overflowed")
        self.hub.drop(self)

    def hold(self) -> None:
        """Until :meth:`release`: keep notifications back (a response is being made)."""
        self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        self.touch()
        for text in held:
            if self.overflowed:
                return
            self._push(text)


class Hub:
    """Which sessions watch which accounts, entries and economies' forks; fed
    by the applier, the submitter and the fork monitor. Its callbacks run on
    the trio thread inside those services, so they do only lookups and
    non-blocking sends, and never raise into them."""

    def __init__(self, node: Node) -> None:
        self.node = node
        #: economy -> account -> subscriptions
        self._accounts: dict[bytes, dict[bytes, dict[Subscription, None]]] = {}
        #: entry id -> subscriptions
        self._entries: dict[bytes, dict[Subscription, None]] = {}
        #: economy -> forks subscriptions
        self._forks: dict[bytes, dict[Subscription, None]] = {}
        #: job subscription -> the relay's watcher handle
        self._jobs: dict[Subscription, int] = {}
        self._closed = False
        # The services offer no way to remove a listener; a closed hub's
        # listeners stay registered and do nothing.
        node.applier.on_applied(self._on_applied)
        node.submitter.subscribe(self._on_status)
        node.forks.subscribe(self._on_fork)

    def close(self) -> None:
        self._closed = True
        self._accounts.clear()
        self._entries.clear()
        self._forks.clear()
        for sub in list(self._jobs):
            self.forget(sub)

    def watch_account(self, session: Session, economy: bytes, account: bytes) -> Subscription:
        sub = session.new_subscription("account", (economy, account))
        self._accounts.setdefault(economy, {}).setdefault(account, {})[sub] = None
        return sub

    def watch_entry(self, session: Session, entry_id: bytes) -> Subscription:
        sub = session.new_subscription("entry", (entry_id,))
        self._entries.setdefault(entry_id, {})[sub] = None
        return sub

    def watch_forks(self, session: Session, economy: bytes) -> Subscription:
        sub = session.new_subscription("forks", (economy,))
        self._forks.setdefault(economy, {})[sub] = None
        return sub

    def watch_job(self, session: Session, job: bytes) -> Subscription:
        """Each new answer of the provider about a job this node relays (the
        relay polls while someone watches); the subscription ends after the
        RESULT, or when the provider no longer holds the job. ``RelayError``
        for a job the relay does not know."""
        relay = self.node.compute.relay
        relayed = relay.job(job)
        sub = session.new_subscription("job", (job,))
        if relayed.ended:  # once, after the response naming it
            session.notify(sub.id, types.ComputeAnswer.of(job, relayed.answer).to_json())
            session.end(sub)
            return sub

        def answered(r: Relayed, answer: bytes) -> None:
            if self._closed or sub not in self._jobs:
                return
            try:
                sub.session.notify(sub.id, types.ComputeAnswer.of(job, answer).to_json())
            except Exception:  # never into the relay
                log.exception("job notifications failed")
            if r.ended:
                self.forget(sub)

        self._jobs[sub] = relay.watch(job, answered)
        return sub

    def forget(self, sub: Subscription) -> None:
        sub.session.end(sub)
        if sub.topic == "job":
            handle = self._jobs.pop(sub, None)
            if handle is not None:
                self.node.compute.relay.unwatch(sub.key[0], handle)
            return
        if sub.topic == "forks":
            subs = self._forks.get(sub.key[0], {})
            subs.pop(sub, None)
            if not subs:
                self._forks.pop(sub.key[0], None)
        elif sub.topic == "account":
            economy, account = sub.key
            by_account = self._accounts.get(economy, {})
            subs = by_account.get(account, {})
            subs.pop(sub, None)
            if not subs:
                by_account.pop(account, None)
                if not by_account:
                    self._accounts.pop(economy, None)
        else:
            subs = self._entries.get(sub.key[0], {})
            subs.pop(sub, None)
            if not subs:
                self._entries.pop(sub.key[0], None)

    def drop(self, session: Session) -> None:
        for sub in list(session.subscriptions.values()):
            self.forget(sub)

    def _on_applied(self, economy_id: bytes, certs: tuple[Certificate, ...]) -> None:
        by_account = self._accounts.get(economy_id)
        if not by_account or self._closed:
            return
        try:
            for cert in certs:
                view: dict[str, Json] | None = None
                for account in entry_accounts(cert.entry):
                    for sub in list(by_account.get(account, ())):
                        view = view or types.CertifiedEntry.of_certificate(cert).to_json()
                        sub.session.notify(sub.id, view)
        except Exception:  # never into the applier: it is the node's one writer
            log.exception("account notifications failed")

    def _on_fork(self, economy_id: bytes, evidence: ForkEvidence) -> None:
        subs = self._forks.get(economy_id)
        if not subs or self._closed:
            return
        try:
            economy = self.node.applier.economies[economy_id]
            view = types.Fork.of(economy, evidence).to_json()
            for sub in list(subs):
                sub.session.notify(sub.id, view)
        except Exception:  # never into the fork monitor (the writer calls it)
            log.exception("fork notifications failed")

    def _on_status(self, status: Status) -> None:
        if self._closed or status.state == PENDING:
            return
        subs = self._entries.pop(status.entry_id, None)
        if not subs:
            return
        try:
            view = status_view(status).to_json()
            for sub in subs:
                sub.session.notify(sub.id, view)
                sub.session.end(sub)  # final: the subscription is over
        except Exception:  # never into the submitter
            log.exception("entry notifications failed")
