"""Forks on the node (node/forks.py, protocol/forks.py).

The cluster test is the issue's check: two validators of four patched to
ignore their locks, an author double-spends through two submitters, both
entries are certified, and every node — validators and a follower —
reports the fork within a bounded wait: the evidence in its store, the
``economy_forks`` RPC, the ``forks`` subscription, the
``mycelia_forks_detected_total`` counter and an ERROR naming the two guilty
validators; nothing past the fork is applied or voted for; a node started
afterwards learns of it by sync. The other tests take each path a second
certificate can arrive by (the applier's callers: gossip, sync, a
validator's attachments, evidence a peer serves) without the network, and
every refusal of bad evidence with its reason, changing nothing.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from mycelia.client import AsyncClient, Endpoint, ForkInfo
from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.daemon import MetricsExporter, Node
from mycelia.node.forks import ForkMonitor, add_evidence
from mycelia.node.metrics import Metrics
from mycelia.node.rpc import Api, Hub
from mycelia.node.rpc.methods import economy_forks
from mycelia.node.store import Store
from mycelia.node.submitter import CERTIFIED, REFUSED
from mycelia.node.sync import Sync
from mycelia.node.validator import ValidatorService
from mycelia.protocol import (
    Certificate,
    Entry,
    ForkEvidence,
    Reason,
    Refused,
    SignedEntry,
    Transfer,
    Vote,
    assemble,
    codec,
    did_encode,
)
from mycelia.protocol.forks import MAX_EVIDENCE_BYTES
from mycelia.protocol.ledger import GapBuffer
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.cluster import Wallet, cluster
from mycelia.testing.economies import T0, World, genesis, key, sign_genesis, validator_keys
from tests.node.test_rpc import ECON, LIMITS, SOLO, SOLO_GENESIS, serving, solo

A, B, C = key(1, "wallet"), key(2, "wallet"), key(3, "wallet")
#: Generous: the checks wait for events, never for a time.
DEADLINE_S = 60


def world() -> World:
    """The cluster's economy, with the validators' keys, for building
    certificates outside the nodes."""
    vk = validator_keys(4)
    return World(genesis(validators=vk, default_limit=1_000), vk)


def certify(w: World, signed: SignedEntry, signers: list[int]) -> Certificate:
    votes = [Vote.make(w.vkeys[i], w.id, 0, signed.id) for i in signers]
    return assemble(w.economy, signed, votes)


def double_spend(w: World) -> tuple[SignedEntry, SignedEntry]:
    """A's two entries for seq 1: 5 to B, 5 to C."""
    x = w.entry(A, Transfer(B.public, 5), seq=1, prev=ZERO_ID)
    y = w.entry(A, Transfer(C.public, 5), seq=1, prev=ZERO_ID)
    return x, y


def fork_pair(w: World) -> tuple[Certificate, Certificate]:
    """The double spend, certified twice: validators 2 and 3 signed both."""
    x, y = double_spend(w)
    return certify(w, x, [0, 2, 3]), certify(w, y, [1, 2, 3])


def snapshot(store: Store, economy: bytes) -> tuple[Any, ...]:
    """What bad evidence must leave as it was."""
    return (
        store.accounts(economy),
        store.chain_ids(economy),
        store.fork_slots(economy),
        store.forks(economy),
    )


def fork_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "mycelia.forks" and r.levelno == logging.ERROR and "fork in" in r.getMessage()
    ]


# -- patches: a validator that ignores its locks, one that says when it voted --------------


def ignore_locks(node: Node, ready: trio.Event) -> None:
    """Byzantine: grant every vote without looking at (or writing) the lock
    table, and answer only once ``ready`` is set — it colludes with the
    author, signing both entries before either can be certified, so the
    fork does not depend on which request the network delivers first."""
    vote = node.validator.vote

    def grant_all(grants: list[Any]) -> list[bool]:
        return [True] * len(grants)

    async def colluding(economy_id: bytes, items: list[wire.VoteItem]) -> Any:
        with trio.fail_after(DEADLINE_S):
            await ready.wait()
        return await vote(economy_id, items)

    node.store.grant_votes_sync = grant_all  # type: ignore[method-assign]
    node.validator.vote = colluding  # type: ignore[method-assign]


def report_vote(node: Node, entry_id: bytes, voted: trio.Event) -> None:
    """Honest, unchanged; sets ``voted`` once it answered a vote for ``entry_id``."""
    vote = node.validator.vote

    async def reporting(economy_id: bytes, items: list[wire.VoteItem]) -> Any:
        results = await vote(economy_id, items)
        if any(r.vote is not None and r.vote.entry_id == entry_id for r in results):
            voted.set()
        return results

    node.validator.vote = reporting  # type: ignore[method-assign]


def forks_counted(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("mycelia_forks_detected_total")
    return 0.0 if value is None else value


# -- the cluster ---------------------------------------------------------------------------------


async def test_two_lock_ignoring_validators_fork_and_every_node_reports_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="mycelia.forks")
    w = world()
    x, y = double_spend(w)
    config = replace(LIMITS, unix_socket=False, max_subscriptions=4)
    async with cluster(tmp_path, 4, 1) as c, trio.open_nursery() as nursery:
        assert c.economy_id == w.id
        v0, v1, v2, v3 = c.validators
        (follower,) = c.followers
        guilty = [did_encode(v2.key.public), did_encode(v3.key.public)]
        metrics = {n: Metrics(process_metrics=False) for n in c.nodes}
        exporters = {n: MetricsExporter(n, metrics[n]) for n in c.nodes}
        econ = "0x" + w.id.hex()
        async with serving(nursery, follower, config) as rpc, rpc.ws() as ws:
            sub = await ws.result("subscribe", topic="forks", economy=econ)

            # Each honest validator hears of a different entry first and
            # locks it; the two patched ones sign both.
            for honest, entry in ((v0, x), (v1, y)):
                [result] = await honest.validator.vote(w.id, [wire.VoteItem(entry)])
                assert result.vote is not None
            voted = {x.id: trio.Event(), y.id: trio.Event()}
            report_vote(v0, x.id, voted[x.id])
            report_vote(v1, y.id, voted[y.id])
            ready = trio.Event()
            ignore_locks(v2, ready)
            ignore_locks(v3, ready)

            async def open_gate() -> None:
                for event in voted.values():
                    await event.wait()
                ready.set()

            statuses: dict[bytes, Any] = {}

            async def submit(node: Node, signed: SignedEntry) -> None:
                statuses[signed.id] = await node.submitter.wait(await node.submit(signed))

            with trio.fail_after(DEADLINE_S):
                async with trio.open_nursery() as submitting:
                    submitting.start_soon(open_gate)
                    submitting.start_soon(submit, v0, x)  # two submitters
                    submitting.start_soon(submit, v1, y)
            # Both were certified; a submitter that met the other certificate
            # first reports its own as refused with conflict.
            for status in statuses.values():
                assert status.state == CERTIFIED or status.reason is Reason.CONFLICT, status
            assert any(s.state == CERTIFIED for s in statuses.values())

            # Every node reports the fork, with the evidence, within a bounded wait.
            with trio.fail_after(DEADLINE_S):
                # (the monitor hears of it just after the store commits it)
                while not all(n.store.fork_slots(w.id) and n.forks.detected for n in c.nodes):
                    await trio.sleep(0.05)
                notified = await ws.notification(sub)
            for node in c.nodes:
                assert node.store.fork_slots(w.id) == [(A.public, 1)]
                evidence = ForkEvidence.decode(node.store.fork(w.id, A.public, 1))  # type: ignore[arg-type]
                assert sorted(evidence.entry_ids) == sorted([x.id, y.id])
                assert evidence.verify(node.applier.economies[w.id]) == (
                    v2.key.public,
                    v3.key.public,
                )
                api = Api(node, config, Hub(node))
                page = (await economy_forks(api, None, w.id)).to_json()
                [fork] = page["forks"]
                assert (fork["author"], fork["seq"], fork["guilty"]) == (
                    did_encode(A.public),
                    1,
                    guilty,
                )
                exporters[node].export()
                assert forks_counted(metrics[node]) == 1
                # the branch it applied first stays, the other is not applied
                assert node.store.chain_ids(w.id)[(A.public, 1)] in (x.id, y.id)
            over_rpc = await rpc.result("economy_forks", economy=econ)
            assert over_rpc["forks"] == [notified]
            assert over_rpc["next_cursor"] is None
            assert notified["guilty"] == guilty
            assert {e["id"] for e in notified["entries"]} == {"0x" + x.id.hex(), "0x" + y.id.hex()}
            summary = {e["id"]: e for e in await rpc.result("economy_list")}[econ]
            assert summary["forks"] == 1
            errors = fork_errors(caplog)
            assert len(errors) == len(c.nodes)  # one per node, each naming both guilty
            assert all(all(d in line for d in guilty) for line in errors)
            assert all(did_encode(A.public) in line for line in errors)

            # Nothing past the fork: neither branch's successor is applied…
            after = {n: (n.store.accounts(w.id), n.store.chain_ids(w.id)) for n in c.nodes}
            x2 = certify(w, w.entry(A, Transfer(B.public, 1), seq=2, prev=x.id), [0, 2, 3])
            y2 = certify(w, w.entry(A, Transfer(C.public, 1), seq=2, prev=y.id), [1, 2, 3])
            for node in c.nodes:
                result = await node.applier.apply(w.id, [x2, y2])
                assert result.applied == ()
                assert {exc.reason for _, exc in result.refused} == {Reason.FORKED}
            # …nor voted for: a submission past the fork is refused (forked).
            successor = w.entry(A, Transfer(B.public, 1), seq=2, prev=x.id)
            with trio.fail_after(DEADLINE_S):
                status = await follower.submitter.wait(await follower.submit(successor))
            assert (status.state, status.reason) == (REFUSED, Reason.FORKED)
            for node in c.nodes:
                assert (node.store.accounts(w.id), node.store.chain_ids(w.id)) == after[node]
            # other authors go on
            other = Wallet(B)
            pay = other.transfer(w.id, C.public, 3)
            with trio.fail_after(DEADLINE_S):
                assert (await v0.submitter.wait(await v0.submit(pay))).state == CERTIFIED

            # A node that starts now, connected to one validator, learns of
            # the fork by sync (nobody gossips it again) and reports it too.
            late = await c.start_node(
                key(9, "late"), "late", bootstrap=[v0.addresses[0]], follow=[w.id]
            )
            with trio.fail_after(DEADLINE_S):
                while not late.forks.detected:
                    await trio.sleep(0.05)
            assert late.store.fork(w.id, A.public, 1) == v0.store.fork(w.id, A.public, 1)
            assert late.forks.detected == 1
            assert len(fork_errors(caplog)) == len(c.nodes) + 1
        nursery.cancel_scope.cancel()


# -- each path to the one recorder, without the network -----------------------------------------


async def _node_parts(tmp_path: Path, w: World) -> tuple[Store, Applier, ForkMonitor, list[Any]]:
    store = Store(tmp_path / "store", sync=False)
    applier = Applier(store)
    await applier.add_economy(sign_genesis(w.genesis, w.vkeys))
    published: list[Any] = []
    fetched: list[Any] = []

    async def fetch(economy_id: bytes, ids: list[bytes]) -> int:
        fetched.append((economy_id, ids))
        return 0

    monitor = ForkMonitor(
        store, applier, publish=lambda e, cert: published.append(cert), fetch=fetch
    )
    return store, applier, monitor, [published, fetched]


async def test_a_second_certificate_by_any_path_is_recorded_once_and_published(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Gossip and sync both hand certificates to the applier: one apply after
    another, or both in one batch — one evidence, one ERROR, the pair
    published once, and a repeat records nothing."""
    caplog.set_level(logging.ERROR, logger="mycelia.forks")
    w = world()
    x, y = fork_pair(w)
    store, applier, monitor, (published, _) = await _node_parts(tmp_path, w)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        assert (await applier.apply(w.id, [x])).applied == (x.entry_id,)
        result = await applier.apply(w.id, [y])
        assert [exc.reason for _, exc in result.refused] == [Reason.CONFLICT]
        assert result.forks == (ForkEvidence.of(x, y),)
        assert monitor.detected == 1
        assert {c.entry_id for c in published} == {x.entry_id, y.entry_id}
        [line] = fork_errors(caplog)
        assert did_encode(w.vkeys[2].public) in line
        assert did_encode(w.vkeys[3].public) in line
        assert did_encode(w.vkeys[0].public) not in line
        # the same certificates again, together (a gossip batch of the pair)
        again = await applier.apply(w.id, [x, y])
        assert again.forks == ()
        assert monitor.detected == 1
        assert len(published) == 2
        assert [ForkEvidence.decode(b) for b in store.forks(w.id)] == [ForkEvidence.of(x, y)]
        nursery.cancel_scope.cancel()
    store.close()


async def test_both_in_one_batch_keep_the_first_and_record_the_fork(tmp_path: Path) -> None:
    w = world()
    x, y = fork_pair(w)
    store, applier, monitor, _ = await _node_parts(tmp_path, w)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        result = await applier.apply(w.id, [x, y])
        assert len(result.applied) == 1
        assert len(result.forks) == 1
        assert monitor.count(w.id) == 1
        assert monitor.evidence(w.id) == list(result.forks)
        nursery.cancel_scope.cancel()
    store.close()


async def test_a_validator_meets_the_fork_in_what_a_submitter_attached(tmp_path: Path) -> None:
    """A submitter attaches certificates to a vote request; a second
    certificate for a slot the validator holds is recorded there, and the
    validator votes for nothing of that author past the fork."""
    w = world()
    x, y = fork_pair(w)
    store, applier, monitor, _ = await _node_parts(tmp_path, w)
    validator = ValidatorService(w.vkeys[0], store, applier)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        nursery.start_soon(validator.run)
        await applier.apply(w.id, [x])
        successor = w.entry(A, Transfer(B.public, 1), seq=2, prev=y.entry_id)
        [answer] = await validator.vote(w.id, [wire.VoteItem(successor, (y,))])
        assert monitor.detected == 1
        assert store.fork_slots(w.id) == [(A.public, 1)]
        assert (answer.vote, answer.reason) == (None, Reason.FORKED)
        on_x = w.entry(A, Transfer(B.public, 1), seq=2, prev=x.entry_id)
        [answer] = await validator.vote(w.id, [wire.VoteItem(on_x)])
        assert answer.reason is Reason.FORKED
        nursery.cancel_scope.cancel()
    store.close()


async def test_a_certificate_on_the_other_branch_makes_the_node_fetch_its_prev(
    tmp_path: Path,
) -> None:
    w = world()
    x, y = fork_pair(w)
    y2 = certify(w, w.entry(A, Transfer(C.public, 1), seq=2, prev=y.entry_id), [1, 2, 3])
    store, applier, monitor, (_, fetched) = await _node_parts(tmp_path, w)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        await nursery.start(monitor.run)
        await applier.apply(w.id, [x])
        result = await applier.apply(w.id, [y2])  # builds on y, which this node lacks
        assert result.suspects == (y.entry_id,)
        assert result.forks == ()
        with trio.fail_after(DEADLINE_S):
            while not fetched:
                await trio.sleep(0.01)
        assert fetched == [(w.id, [y.entry_id])]
        await applier.apply(w.id, [y2])  # asked once only
        await applier.apply(w.id, [y])  # what the fetch brings: now it is evidence
        assert monitor.detected == 1
        await trio.lowlevel.checkpoint()
        assert fetched == [(w.id, [y.entry_id])]
        nursery.cancel_scope.cancel()
    store.close()


async def test_the_store_keeps_the_evidence_across_a_restart(tmp_path: Path) -> None:
    w = world()
    x, y = fork_pair(w)
    x2 = certify(w, w.entry(A, Transfer(B.public, 1), seq=2, prev=x.entry_id), [0, 1, 2])
    store = Store(tmp_path / "store", sync=False)
    applier = Applier(store)
    await applier.add_economy(sign_genesis(w.genesis, w.vkeys))
    economy, buffer = applier.economies[w.id], applier.buffers[w.id]
    store.apply_sync(economy, buffer, [x])
    assert store.apply_sync(economy, buffer, [y]).forks == (ForkEvidence.of(x, y),)
    store.close()
    reopened = Store(tmp_path / "store", sync=False)
    assert reopened.fork_seq(w.id, A.public) == 1
    assert reopened.fork_slots(w.id) == [(A.public, 1)]
    result = reopened.apply_sync(economy, GapBuffer(), [x2])
    assert [exc.reason for _, exc in result.refused] == [Reason.FORKED]
    assert reopened.account(w.id, A.public).head == x.entry_id
    reopened.close()


# -- sync: serving evidence, and evidence from a peer verified first ------------------------------


class _Peer:
    """A peer that answers the sync protocol from a table of answers by op."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def peers(self) -> list[str]:
        return ["peer"]

    async def request(
        self, peer: str, protocol: str, data: bytes, *, max_response_bytes: int | None = None
    ) -> bytes:
        op, _ = wire.decode_sync_request(data)
        self.asked.append(op)
        return self.answers[op]


async def test_sync_serves_the_slots_and_the_evidence(tmp_path: Path) -> None:
    w = world()
    x, y = fork_pair(w)
    store, applier, _, _ = await _node_parts(tmp_path, w)
    store.apply_sync(applier.economies[w.id], applier.buffers[w.id], [x, y])
    sync = Sync(_Peer({}), store, applier, follow={w.id})
    slots = await sync.handle("p", wire.encode_sync_request("forks", w.id))
    assert wire.decode_fork_slots(slots) == [(A.public, 1)]
    one = await sync.handle("p", wire.encode_sync_request("fork", w.id, A.public, 1))
    assert wire.decode_fork(one) == ForkEvidence.of(x, y)
    none = await sync.handle("p", wire.encode_sync_request("fork", w.id, A.public, 2))
    assert wire.decode_fork(none) is None
    for bad in (
        wire.encode_sync_request("fork", w.id, A.public, 0),
        wire.encode_sync_request("fork", w.id, b"short", 1),
        wire.encode_sync_request("fork", w.id, A.public),
        wire.encode_sync_request("forks", b"not an id"),
    ):
        with pytest.raises(Refused) as info:
            wire.decode_fork_slots(await sync.handle("p", bad))
        assert info.value.reason is Reason.MALFORMED
    store.close()


def _forged(cert: Certificate) -> Certificate:
    sig = bytearray(cert.signatures[0])
    sig[5] ^= 1
    return replace(cert, signatures=(bytes(sig), *cert.signatures[1:]))


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", Reason.BAD_SIGNATURE),
        ("same entry", Reason.NOT_A_FORK),
        ("other slot", Reason.MALFORMED),
        ("out of order", Reason.NON_CANONICAL),
        ("too large", Reason.TOO_LARGE),
    ],
)
async def test_bad_evidence_from_a_peer_is_refused_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str, reason: Reason
) -> None:
    caplog.set_level(logging.WARNING, logger="mycelia.sync")
    w = world()
    x, y = fork_pair(w)
    other = certify(w, w.entry(B, Transfer(C.public, 1), seq=1, prev=ZERO_ID), [0, 1, 2])
    if case == "forged":  # the half that verifies must not be applied either
        raw = ForkEvidence.of(x, _forged(y)).encode()
    elif case == "same entry":
        raw = codec.encode(["fork", 1, x.encode(), certify(w, x.signed_entry, [1, 2, 3]).encode()])
    elif case == "other slot":  # genuine evidence, but not of the slot asked for
        raw = ForkEvidence.of(x, y).encode()
    elif case == "out of order":
        low, high = sorted([x, y], key=lambda c: c.entry_id)
        raw = codec.encode(["fork", 1, high.encode(), low.encode()])
    else:
        raw = b"\x00" * (MAX_EVIDENCE_BYTES + 1)
    slot = (B.public, 1) if case == "other slot" else (A.public, 1)
    store, applier, monitor, (published, _) = await _node_parts(tmp_path, w)
    peer = _Peer(
        {
            "heads": wire.encode_heads({}),
            "forks": wire.encode_fork_slots([slot]),
            "fork": codec.encode(["fork", raw]),
        }
    )
    sync = Sync(peer, store, applier, follow={w.id})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        store.apply_sync(applier.economies[w.id], applier.buffers[w.id], [other])
        before = snapshot(store, w.id)
        assert await sync._forks("peer", w.id) == 0
        assert peer.asked == ["forks", "fork"]
        assert snapshot(store, w.id) == before
        assert monitor.detected == 0
        assert published == []
        warnings = [r.getMessage() for r in caplog.records if r.name == "mycelia.sync"]
        assert any(reason.value in line for line in warnings), warnings
        nursery.cancel_scope.cancel()
    store.close()


async def test_genuine_evidence_from_a_peer_is_recorded(tmp_path: Path) -> None:
    w = world()
    x, y = fork_pair(w)
    evidence = ForkEvidence.of(x, y)
    store, applier, monitor, (published, _) = await _node_parts(tmp_path, w)
    peer = _Peer(
        {
            "heads": wire.encode_heads({}),
            "forks": wire.encode_fork_slots([(A.public, 1)]),
            "fork": wire.encode_fork(evidence.encode()),
        }
    )
    sync = Sync(peer, store, applier, follow={w.id})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        assert await sync._forks("peer", w.id) == 1
        assert monitor.evidence(w.id) == [evidence]
        assert monitor.detected == 1
        assert len(published) == 2
        # known now: the next round asks for the list only
        assert await sync._forks("peer", w.id) == 0
        assert peer.asked == ["forks", "fork", "forks"]
        nursery.cancel_scope.cancel()
    store.close()


async def test_add_evidence_verifies_the_pair_before_applying_anything(tmp_path: Path) -> None:
    w = world()
    x, y = fork_pair(w)
    store, applier, monitor, _ = await _node_parts(tmp_path, w)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        before = snapshot(store, w.id)
        with pytest.raises(Refused) as info:
            await add_evidence(applier, w.id, ForkEvidence.of(x, _forged(y)))
        assert info.value.reason is Reason.BAD_SIGNATURE
        assert snapshot(store, w.id) == before
        assert monitor.detected == 0
        with pytest.raises(Refused) as info:
            await add_evidence(applier, b"\x01" * 32, ForkEvidence.of(x, y))
        assert info.value.reason is Reason.WRONG_ECONOMY
        nursery.cancel_scope.cancel()
    store.close()


def test_the_sync_messages_are_bounded() -> None:
    author = b"\x01" * 32
    too_many = codec.encode(["forks", [[author, 1]] * (wire.MAX_FORK_SLOTS + 1)])
    with pytest.raises(Refused) as info:
        wire.decode_fork_slots(too_many)
    assert info.value.reason is Reason.MALFORMED
    for bad in (
        codec.encode(["forks", [[author, 0]]]),
        codec.encode(["forks", [[b"short", 1]]]),
        codec.encode(["heads", []]),
    ):
        with pytest.raises(Refused):
            wire.decode_fork_slots(bad)
    big = codec.encode(["fork", b"\x00" * (MAX_EVIDENCE_BYTES + 1)])
    with pytest.raises(Refused) as info:
        wire.decode_fork(big)
    assert info.value.reason is Reason.TOO_LARGE
    assert wire.decode_fork(wire.encode_fork(None)) is None
    refused = wire.encode_error(Reason.MALFORMED, "unknown sync request 'forks'")
    with pytest.raises(Refused):  # an older peer: refused, sync goes on without it
        wire.decode_fork_slots(refused)


# -- the RPC -------------------------------------------------------------------------------------


async def test_economy_forks_pages_and_refuses_bad_params(tmp_path: Path) -> None:
    """On a one-validator economy whose validator signed two entries in each
    of two slots: pages in (author, seq) order, and every bad param refused
    with its code and reason."""
    econ_id = SOLO_GENESIS.genesis.id
    async with solo(tmp_path) as s:
        node = s.node
        economy = node.applier.economies[econ_id]
        for author in (A, B):
            for amount in (1, 2):
                signed = Entry(econ_id, author.public, 1, ZERO_ID, T0, Transfer(C.public, amount))
                entry = signed.sign(author)
                cert = assemble(economy, entry, [Vote.make(SOLO, econ_id, 0, entry.id)])
                await node.applier.apply(econ_id, [cert])
        assert node.forks.detected == 2
        first = await s.result("economy_forks", economy=ECON, limit=1)
        assert len(first["forks"]) == 1
        assert isinstance(first["next_cursor"], str)
        second = await s.result("economy_forks", economy=ECON, cursor=first["next_cursor"])
        assert len(second["forks"]) == 1
        assert second["next_cursor"] is None
        both = first["forks"] + second["forks"]
        assert [f["author"] for f in both] == sorted([did_encode(A.public), did_encode(B.public)])
        assert all(f["guilty"] == [SOLO.did] and f["seq"] == 1 for f in both)
        whole = await s.result("economy_forks", economy=ECON)
        assert whole == {"forks": both, "next_cursor": None}
        [summary] = await s.result("economy_list")
        assert summary["forks"] == 2

        unknown = await s.error("economy_forks", {"economy": "0x" + "11" * 32})
        assert (unknown["code"], unknown["data"]["reason"]) == (-32002, "unknown_economy")
        big = await s.error("economy_forks", {"economy": ECON, "limit": 11})
        assert (big["code"], big["data"]["reason"]) == (-32003, "page_too_large")
        for params in (
            {"economy": ECON, "cursor": "0x12"},
            {"economy": ECON, "limit": 0},
            {"economy": "0x12"},
            {},
        ):
            bad = await s.error("economy_forks", params)
            assert (bad["code"], bad["data"]["reason"]) == (-32602, "invalid_params"), params
        http_sub = await s.error("subscribe", {"topic": "forks", "economy": ECON})
        assert http_sub["data"]["reason"] == "websocket_only"
        async with s.ws() as ws:
            for params in ({"topic": "forks"}, {"topic": "forks", "economy": ECON, "id": ECON}):
                answer = await ws.call("subscribe", **params)
                assert answer["error"]["data"]["reason"] == "invalid_params", params
            missing = await ws.call("subscribe", topic="forks", economy="0x" + "11" * 32)
            assert missing["error"]["data"]["reason"] == "unknown_economy"
            sub = await ws.result("subscribe", topic="forks", economy=ECON)
            assert await ws.result("unsubscribe", subscription=sub) is True


async def test_a_wallet_subscribes_to_forks_and_verifies_each(tmp_path: Path) -> None:
    econ_id = SOLO_GENESIS.genesis.id
    async with solo(tmp_path) as s:
        node = s.node
        economy = node.applier.economies[econ_id]
        certs = []
        for amount in (1, 2):
            entry = Entry(econ_id, A.public, 1, ZERO_ID, T0, Transfer(C.public, amount)).sign(A)
            certs.append(assemble(economy, entry, [Vote.make(SOLO, econ_id, 0, entry.id)]))
        async with AsyncClient(Endpoint.from_datadir(node.datadir)) as client:
            async with client.subscribe("forks", economy=ECON) as sub:
                await node.applier.apply(econ_id, certs[:1])
                await node.applier.apply(econ_id, certs[1:])
                with trio.fail_after(DEADLINE_S):
                    fork = await sub.__anext__()
            assert isinstance(fork, ForkInfo)
            assert fork.evidence == ForkEvidence.of(*certs)
            assert fork.guilty == (SOLO.did,)
            assert fork.author == did_encode(A.public)
            assert await client.economy_forks(econ_id) == [fork]
