"""What a submitter reports is what the store holds (issue: statuses that lie).

* A certificate assembled while this node lacks the author's previous entry
  is parked in the store before anything says "certified", and survives a
  SIGKILL before it was gossiped.
* A crash between the certificate's commit and the pending record's delete
  still reports certified after the restart (the store is asked first).
* Refusals that depend on the validators' state (``missing`` we cannot
  cure yet, ``insufficient_balance``) keep the entry pending until a
  deadline, then refuse it as not final; final refusals are immediate; both
  survive a restart.
* Validators re-send the vote they locked, also for an entry since applied.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.store import Store
from mycelia.node.submitter import CERTIFIED, PENDING, REFUSED, Submitter
from mycelia.node.validator import ValidatorService
from mycelia.protocol import Reason, SignedEntry, Transfer, Vote
from mycelia.protocol.ledger import GapBuffer
from mycelia.protocol.reasons import NeedChain
from mycelia.testing.economies import World, key, sign_genesis

ROOT = Path(__file__).resolve().parents[2]
A, B = key(1, "wallet"), key(2, "wallet")

#: (validator index, entry, ask number for that validator) -> answer
Policy = Callable[[int, SignedEntry, int], wire.VoteResult]


class Validators:
    """Four fake validators that sign real votes, or refuse as ``policy`` says."""

    def __init__(self, w: World, policy: Policy | None = None) -> None:
        self.w = w
        self.policy = policy
        self.asks: dict[tuple[int, bytes], int] = {}

    def vote(self, index: int, signed: SignedEntry) -> wire.VoteResult:
        k = self.w.vkeys[index]
        return wire.VoteResult(vote=Vote.make(k, self.w.id, self.w.economy.epoch, signed.id))

    async def send(
        self, validator: bytes, _economy: bytes, items: list[wire.VoteItem]
    ) -> list[wire.VoteResult]:
        # Through the wire format, as another node's answer would come.
        request = wire.encode_vote_request(_economy, items)
        _, items = wire.decode_vote_request(request)
        index = self.w.economy.index[validator]
        out = []
        for item in items:
            n = self.asks.get((index, item.signed.id), 0) + 1
            self.asks[(index, item.signed.id)] = n
            if self.policy is None:
                out.append(self.vote(index, item.signed))
            else:
                out.append(self.policy(index, item.signed, n))
        return wire.decode_vote_response(wire.encode_vote_response(out), len(items))


async def open_node(path: Path, w: World) -> tuple[Store, Applier]:
    store = Store(path)
    applier = Applier(store)
    await applier.add_economy(sign_genesis(w.genesis, w.vkeys))
    return store, applier


async def run_submitter(
    store: Store,
    applier: Applier,
    validators: Validators,
    body: Callable[[Submitter], object],
    **kw: float,
) -> None:
    published: list[bytes] = []
    submitter = Submitter(
        store, applier, validators.send, lambda _e, c: published.append(c.entry_id), **kw
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        await nursery.start(submitter.run)
        await body(submitter)  # type: ignore[misc]
        nursery.cancel_scope.cancel()


# -- parked certificates --------------------------------------------------------

CRASH_AFTER_ASSEMBLY = """
import os, signal, sys, trio
from pathlib import Path
sys.path.insert(0, {root!r})
from mycelia.node.applier import Applier
from mycelia.node.store import Store
from mycelia.node.submitter import Submitter
from mycelia.protocol import Transfer
from mycelia.testing.economies import World, key, sign_genesis
from tests.node.test_statuses import Validators

async def main():
    w = World()
    a, b = key(1, "wallet"), key(2, "wallet")
    first = w.transfer(a, b, 5)  # certified elsewhere; never reaches this node
    second = w.entry(a, Transfer(b.public, 6, ""))
    store = Store({path!r})
    applier = Applier(store)
    await applier.add_economy(sign_genesis(w.genesis, w.vkeys))

    def publish(_economy, _cert):
        # The certificate was handed to gossip: a crash now, before any flush.
        print(second.id.hex(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    submitter = Submitter(store, applier, Validators(w).send, publish)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        await nursery.start(submitter.run)
        await submitter.submit(second)
        await trio.sleep(30)

trio.run(main)
"""


async def test_a_gap_buffered_certificate_survives_a_crash_before_gossip(tmp_path: Path) -> None:
    path = tmp_path / "store"
    script = CRASH_AFTER_ASSEMBLY.format(root=str(ROOT), path=str(path))
    proc = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    )
    assert proc.returncode == -9, proc.stderr
    second_id = bytes.fromhex(proc.stdout.split()[-1])
    w = World()
    first = w.transfer(A, B, 5)
    store, applier = await open_node(path, w)
    try:
        cert = store.certificate(second_id)
        assert cert is not None
        assert cert.entry.seq == 2
        assert store.certificate(first.entry_id) is None
        assert [c.entry_id for c in applier.buffers[w.id].snapshot()] == [second_id]

        async def body(submitter: Submitter) -> None:
            assert submitter.status(second_id).state == CERTIFIED
            with trio.fail_after(10):  # finished, not resubmitted
                while store.pending():
                    await trio.sleep(0.02)
            # The gap fills: both apply, and nothing is parked any more.
            result = await applier.apply(w.id, [first])
            assert result.applied == (first.entry_id, second_id)
            assert store.parked(w.id) == []

        await run_submitter(store, applier, Validators(w), body)
    finally:
        store.close()


async def test_parked_is_certified_and_reported_only_once_durable(tmp_path: Path) -> None:
    w = World()
    w.transfer(A, B, 5)
    second = w.entry(A, Transfer(B.public, 6, ""))
    store, applier = await open_node(tmp_path / "s", w)
    try:

        async def body(submitter: Submitter) -> None:
            entry_id = await submitter.submit(second)
            with trio.fail_after(30):
                status = await submitter.wait(entry_id)
            assert status.state == CERTIFIED
            assert [c.entry_id for c in store.parked(w.id)] == [entry_id]

        await run_submitter(store, applier, Validators(w), body)
    finally:
        store.close()


# -- commit, then a crash before the pending delete --------------------------------


async def test_crash_between_commit_and_pending_delete_reports_certified(tmp_path: Path) -> None:
    w = World()
    cert = w.transfer(A, B, 5)
    store, applier = await open_node(tmp_path / "s", w)
    store.apply_sync(applier.economies[w.id], GapBuffer(), [cert])
    store.update_pending_sync([(cert.entry_id, [cert.signed_entry.to_wire(), 0])], [])

    def seq_reused(_i: int, _s: SignedEntry, _n: int) -> wire.VoteResult:
        return wire.VoteResult(reason=Reason.SEQ_REUSED, detail="seq 1 already used")

    validators = Validators(w, seq_reused)
    try:

        async def body(submitter: Submitter) -> None:
            status = submitter.status(cert.entry_id)
            assert status.state == CERTIFIED
            assert status.certificate is not None
            await trio.sleep(0.2)
            assert submitter.status(cert.entry_id).state == CERTIFIED
            assert validators.asks == {}  # resumed from the store, never asked
            assert submitter.pending_count == 0

        await run_submitter(store, applier, validators, body)
        assert store.pending() == {}
    finally:
        store.close()


async def test_a_refused_entry_later_certified_reports_certified(tmp_path: Path) -> None:
    w = World()
    signed = w.entry(A, Transfer(B.public, 5, ""))

    def locked(_i: int, _s: SignedEntry, _n: int) -> wire.VoteResult:
        return wire.VoteResult(reason=Reason.RESOURCE_LOCKED, detail="voted for another")

    store, applier = await open_node(tmp_path / "s", w)
    try:

        async def body(submitter: Submitter) -> None:
            await submitter.submit(signed)
            with trio.fail_after(30):
                status = await submitter.wait(signed.id)
            assert status.state == REFUSED
            assert status.final
            # The certificate arrives (someone else's quorum): the store wins.
            await applier.apply(w.id, [w.certify(signed)])
            assert submitter.status(signed.id).state == CERTIFIED

        await run_submitter(store, applier, Validators(w, locked), body)
    finally:
        store.close()


# -- refusals that depend on state ----------------------------------------------------


async def test_missing_that_cannot_be_cured_yet_stays_pending(tmp_path: Path) -> None:
    """A pipelining wallet: seq 2 reaches this node before seq 1's certificate.
    The validators say ``missing``; there is nothing to attach, so the entry
    stays pending (with the reason) until gossip brings seq 1."""
    w = World()
    first = w.transfer(A, B, 5)
    second = w.entry(A, Transfer(B.public, 6, ""))
    behind = {"on": True}

    def policy(i: int, s: SignedEntry, _n: int) -> wire.VoteResult:
        if behind["on"]:
            need = NeedChain(A.public, 0, first.entry_id)
            return wire.VoteResult(reason=Reason.MISSING, detail="seq 1", needs=(need,))
        return validators.vote(i, s)

    validators = Validators(w, policy)
    store, applier = await open_node(tmp_path / "s", w)
    try:

        async def body(submitter: Submitter) -> None:
            await submitter.submit(second)
            with trio.fail_after(30):
                while sum(validators.asks.values()) < 4 * 6:  # past the cure attempts
                    await trio.sleep(0.05)
            status = submitter.status(second.id)
            assert status.state == PENDING
            assert status.reason is Reason.MISSING
            await applier.apply(w.id, [first])  # gossip brought seq 1
            behind["on"] = False
            with trio.fail_after(30):
                status = await submitter.wait(second.id)
            assert status.state == CERTIFIED

        await run_submitter(store, applier, validators, body)
    finally:
        store.close()


async def test_stale_insufficient_balance_is_not_final(tmp_path: Path) -> None:
    w = World()
    signed = w.entry(A, Transfer(B.public, 5, ""))

    def policy(i: int, s: SignedEntry, n: int) -> wire.VoteResult:
        if n <= 2:  # the credit that covers it reaches the validators later
            return wire.VoteResult(reason=Reason.INSUFFICIENT_BALANCE, detail="balance 0")
        return validators.vote(i, s)

    validators = Validators(w, policy)
    store, applier = await open_node(tmp_path / "s", w)
    try:

        async def body(submitter: Submitter) -> None:
            await submitter.submit(signed)
            with trio.fail_after(30):
                status = await submitter.wait(signed.id)
            assert status.state == CERTIFIED

        await run_submitter(store, applier, validators, body)
    finally:
        store.close()


async def test_stale_refusal_past_the_deadline_is_refused_not_final_and_kept(
    tmp_path: Path,
) -> None:
    w = World()
    signed = w.entry(A, Transfer(B.public, 5, ""))

    def broke(_i: int, _s: SignedEntry, _n: int) -> wire.VoteResult:
        return wire.VoteResult(reason=Reason.INSUFFICIENT_BALANCE, detail="balance 0")

    path = tmp_path / "s"
    store, applier = await open_node(path, w)
    try:

        async def body(submitter: Submitter) -> None:
            await submitter.submit(signed)
            assert submitter.status(signed.id).state == PENDING
            with trio.fail_after(30):
                status = await submitter.wait(signed.id)
            assert status.state == REFUSED
            assert status.reason is Reason.INSUFFICIENT_BALANCE
            assert not status.final
            assert "not final" in status.detail
            await trio.sleep(0.1)  # the refusal is written with the pending delete

        await run_submitter(store, applier, Validators(w, broke), body, retry_deadline_s=0.5)
    finally:
        store.close()
    # After a restart the node still knows: refused, not final — not "unknown".
    store, applier = await open_node(path, w)
    try:

        async def after(submitter: Submitter) -> None:
            status = submitter.status(signed.id)
            assert status.state == REFUSED
            assert status.reason is Reason.INSUFFICIENT_BALANCE
            assert not status.final

        await run_submitter(store, applier, Validators(w, broke), after)
    finally:
        store.close()


async def test_final_refusal_is_immediate_and_kept(tmp_path: Path) -> None:
    w = World()
    signed = w.entry(A, Transfer(B.public, 5, ""))

    def locked(_i: int, _s: SignedEntry, _n: int) -> wire.VoteResult:
        return wire.VoteResult(reason=Reason.RESOURCE_LOCKED, detail="voted for another")

    path = tmp_path / "s"
    store, applier = await open_node(path, w)
    try:

        async def body(submitter: Submitter) -> None:
            await submitter.submit(signed)
            with trio.fail_after(30):
                status = await submitter.wait(signed.id)
            assert status.state == REFUSED
            assert status.final
            assert status.reason is Reason.RESOURCE_LOCKED
            await trio.sleep(0.1)

        # A deadline far away: a final reason does not wait for it.
        await run_submitter(store, applier, Validators(w, locked), body, retry_deadline_s=3600)
    finally:
        store.close()
    store, applier = await open_node(path, w)
    try:

        async def after(submitter: Submitter) -> None:
            status = submitter.status(signed.id)
            assert status.state == REFUSED
            assert status.reason is Reason.RESOURCE_LOCKED

        await run_submitter(store, applier, Validators(w, locked), after)
    finally:
        store.close()


# -- validators re-send what they locked ------------------------------------------------


async def test_validator_resends_its_vote_for_an_entry_since_applied(tmp_path: Path) -> None:
    w = World()
    store, applier = await open_node(tmp_path / "v", w)
    svc = ValidatorService(w.vkeys[0], store, applier)
    signed = w.entry(A, Transfer(B.public, 5, ""))
    other = w.entry(B, Transfer(A.public, 5, ""))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(applier.run)
            nursery.start_soon(svc.run)
            [first] = await svc.vote(w.id, [wire.VoteItem(signed)])
            assert first.vote is not None
            cert = w.certify(signed)
            w.ledger.apply(cert)
            await applier.apply(w.id, [cert])
            # Applied here now: a fresh check says seq_reused, the stored vote wins.
            [again] = await svc.vote(w.id, [wire.VoteItem(signed)])
            assert again.vote == first.vote
            # An entry certified here without our vote (gossip): voted, locked.
            other_cert = w.certify(other, signers=[1, 2, 3])
            await applier.apply(w.id, [other_cert])
            [late] = await svc.vote(w.id, [wire.VoteItem(other)])
            assert late.vote is not None
            assert late.vote.entry_id == other.id
            # A different entry in that taken slot is still refused.
            twin = w.entry(B, Transfer(A.public, 9, ""), seq=1, prev=other.entry.prev)
            [no] = await svc.vote(w.id, [wire.VoteItem(twin)])
            assert no.vote is None
            assert no.reason in (Reason.SEQ_REUSED, Reason.RESOURCE_LOCKED)
            nursery.cancel_scope.cancel()
    finally:
        store.close()


async def test_a_reconnected_validator_is_asked_again_at_once(tmp_path: Path) -> None:
    """A lane backing off from an unreachable validator (here up to 60 s)
    asks again as soon as that validator's node connects, instead of
    sleeping out its backoff while the entry waits for that vote."""
    w = World()
    signed = w.entry(A, Transfer(B.public, 5, ""))
    down = {"on": True, "tries": 0}
    validators = Validators(w)

    async def send(
        validator: bytes, economy: bytes, items: list[wire.VoteItem]
    ) -> list[wire.VoteResult]:
        if down["on"] and validator == w.vkeys[3].public:
            down["tries"] += 1
            raise OSError("unreachable")
        if validator == w.vkeys[2].public:  # refuses: the quorum needs validator 3
            return [wire.VoteResult(reason=Reason.RESOURCE_LOCKED) for _ in items]
        return await validators.send(validator, economy, items)

    store, applier = await open_node(tmp_path / "s", w)
    submitter = Submitter(store, applier, send, lambda _e, _c: None, max_backoff_s=60.0)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(applier.run)
            await nursery.start(submitter.run)
            await submitter.submit(signed)
            # Backoffs 0.05, 0.1, ... 3.2 s: after the 8th try the lane sleeps 6.4 s.
            with trio.fail_after(60):
                while down["tries"] < 8:
                    await trio.sleep(0.05)
            assert submitter.status(signed.id).waiting_on == 1
            down["on"] = False
            submitter.validator_reachable(w.vkeys[3].public)
            with trio.fail_after(3):  # inside the 6.4 s backoff it is sleeping
                status = await submitter.wait(signed.id)
            assert status.state == CERTIFIED
            nursery.cancel_scope.cancel()
    finally:
        store.close()
