"""A Byzantine simulation of the lock rule (locks.py, DESIGN §4): an author
who double-spends — two different, individually valid entries at the same
seq — never gets two certificates, whatever order the validators see them
in, while the validators that sign anything weigh less than ``2q - T``.

Why that bound: two quorums of weight ``q`` out of a total ``T`` share at
least ``2q - T`` of the weight. If the Byzantine validators weigh less than
that, every pair of quorums shares an honest validator, and an honest
validator votes for at most one entry per resource (it records
``resource -> entry id`` before voting and refuses a resource locked to
another entry). The genesis rule ``3q > 2T`` makes ``2q - T > T/3``, so more
than a third of the weight can be faulty only if the quorum is larger than
its minimum; with four validators of weight 1 (``q = 3``, ``2q - T = 2``) one
Byzantine validator is tolerated and two are not — the last test shows the
fork that two make possible, so the bound is tight, and that the fork's two
certificates are evidence naming exactly the Byzantine validators
(``forks.py``).

The model: each honest validator is its own :class:`Ledger` (its state) plus
a lock table; it votes iff ``ledger.check`` is ok and ``lock_decision``
allows, recording the new locks first. A Byzantine validator votes for
everything. Deliveries of (validator, entry) pairs happen in an order
hypothesis chooses, with repeats; then whoever collected votes tries to
``assemble`` a certificate for each entry.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol import (
    Certificate,
    ChannelClose,
    ChannelOpen,
    ChannelRefund,
    Ledger,
    Reason,
    Refused,
    SignedEntry,
    SigningKey,
    Transfer,
    Vote,
    Voucher,
    assemble,
    channel_state,
)
from mycelia.protocol.channels import Release
from mycelia.protocol.locks import lock_decision, resources
from mycelia.testing.economies import World, genesis, key, validator_keys

A, B, C = key(1), key(2), key(3)


class Honest:
    """A validator that follows the rule: check, lock, then vote."""

    def __init__(self, world: World, index: int) -> None:
        self.index = index
        self.key = world.vkeys[index]
        self.economy = world.economy
        self.ledger = Ledger(world.economy)
        self.locks: dict[bytes, bytes] = {}
        #: every lock ever recorded, in order (a durable lock table only grows)
        self.lock_log: list[tuple[bytes, bytes]] = []
        self.votes: dict[bytes, Vote] = {}

    def deliver(self, signed: SignedEntry) -> Vote | None:
        if not self.ledger.check(signed).ok:
            return None
        entry_id = signed.id
        try:
            new = lock_decision(self.locks, entry_id, resources(signed.entry))
        except Refused as exc:
            assert exc.reason is Reason.RESOURCE_LOCKED
            return None
        for resource in new:
            assert resource not in self.locks
            self.locks[resource] = entry_id
            self.lock_log.append((resource, entry_id))
        vote = Vote.make(self.key, self.economy.id, self.economy.epoch, entry_id)
        self.votes[entry_id] = vote
        return vote


class Byzantine:
    """A validator that signs anything."""

    def __init__(self, world: World, index: int) -> None:
        self.index = index
        self.key = world.vkeys[index]
        self.economy = world.economy

    def deliver(self, signed: SignedEntry) -> Vote | None:
        return Vote.make(self.key, self.economy.id, self.economy.epoch, signed.id)


class Network:
    def __init__(self, weights: Sequence[int], byzantine: set[int]) -> None:
        vk = validator_keys(len(weights))
        self.world = World(genesis(validators=vk, weights=weights), vk)
        self.economy = self.world.economy
        self.nodes: list[Honest | Byzantine] = [
            Byzantine(self.world, i) if i in byzantine else Honest(self.world, i)
            for i in range(len(weights))
        ]
        self.honest = [n for n in self.nodes if isinstance(n, Honest)]

    def fresh_honest(self) -> None:
        """Replace every honest validator by a new one with empty state and
        locks (for replaying the same entries in another order)."""
        for k, node in enumerate(self.nodes):
            if isinstance(node, Honest):
                self.nodes[k] = Honest(self.world, node.index)
        self.honest = [n for n in self.nodes if isinstance(n, Honest)]

    def commit(self, author: SigningKey, to: SigningKey, amount: int) -> Certificate:
        """A history entry: delivered to everyone, certified, applied by all."""
        signed = self.world.entry(author, Transfer(to.public, amount))
        votes = [v for n in self.nodes if (v := n.deliver(signed)) is not None]
        cert = assemble(self.economy, signed, votes)
        for ledger in (self.world.ledger, *(h.ledger for h in self.honest)):
            assert ledger.apply(cert) == [signed.id]
        return cert

    def weight(self, votes: Sequence[Vote]) -> int:
        return sum(
            self.economy.weights[self.economy.index[v]] for v in {v.validator for v in votes}
        )


def double_spend(
    net: Network, history: Sequence[int], spends: Sequence[tuple[SigningKey, int]]
) -> tuple[SignedEntry, SignedEntry]:
    """A's certified ``history`` (transfers to B), then two entries at A's next seq."""
    for amount in history:
        net.commit(A, B, amount)
    x, y = (net.world.entry(A, Transfer(to.public, amount)) for to, amount in spends)
    assert x.entry.seq == y.entry.seq == len(history) + 1
    assert x.entry.prev == y.entry.prev
    assert x.id != y.id
    for h in net.honest:  # each is valid on its own
        assert h.ledger.check(x).ok
        assert h.ledger.check(y).ok
    return x, y


def run(
    net: Network, entries: Sequence[SignedEntry], deliveries: Sequence[tuple[int, int]]
) -> dict[int, Certificate]:
    """Deliver, then try to assemble a certificate for each entry."""
    collected: list[list[Vote]] = [[] for _ in entries]
    for i, e in deliveries:
        node, signed = net.nodes[i], entries[e]
        if isinstance(node, Honest):
            revote = signed.id in node.votes
            earlier, locks_before = node.votes.get(signed.id), len(node.lock_log)
        vote = node.deliver(signed)
        if isinstance(node, Honest) and revote:
            # re-delivery: the same vote again, and no new lock
            assert vote == earlier
            assert len(node.lock_log) == locks_before
        if vote is not None:
            collected[e].append(vote)
    certs = {}
    for e, signed in enumerate(entries):
        enough = net.weight(collected[e]) >= net.economy.quorum
        try:
            certs[e] = assemble(net.economy, signed, collected[e])
        except Refused as exc:
            assert exc.reason is Reason.QUORUM_NOT_REACHED
            assert not enough
        else:
            assert enough
            certs[e].verify(net.economy)
    return certs


def check_safety(
    net: Network, entries: Sequence[SignedEntry], certs: dict[int, Certificate]
) -> None:
    assert len(certs) <= 1
    ids = {s.id for s in entries}
    for h in net.honest:
        # one vote per slot, one entry per resource, each resource locked once
        assert len(ids & h.votes.keys()) <= 1
        locked: dict[bytes, set[bytes]] = {}
        for resource, entry_id in h.lock_log:
            locked.setdefault(resource, set()).add(entry_id)
        assert all(len(held) == 1 for held in locked.values())
        assert len(h.lock_log) == len(locked)
    if not certs:
        return
    ((winner, cert),) = certs.items()
    loser = entries[1 - winner]
    for ledger in (net.world.ledger, *(h.ledger for h in net.honest)):
        assert ledger.apply(cert) == [cert.entry_id]
        assert ledger.check(loser).reason is Reason.SEQ_REUSED
    first = net.honest[0].ledger
    for h in net.honest:
        assert h.ledger.state.snapshot() == first.state.snapshot()
        assert h.ledger.chain == first.chain
    assert first.state.snapshot() == net.world.ledger.state.snapshot()
    assert first.account(A.public).head == cert.entry_id


SPENDS = st.tuples(st.sampled_from([B, C]), st.integers(1, 400))
HISTORY = st.lists(st.integers(1, 100), max_size=2)


def deliveries(data: st.DataObject, n: int, entries: int = 2) -> list[tuple[int, int]]:
    """Every (validator, entry) pair in some order, with a few repeated."""
    pairs = [(i, e) for i in range(n) for e in range(entries)]
    order = list(data.draw(st.permutations(pairs), label="order"))
    repeats = data.draw(
        st.lists(st.tuples(st.integers(0, len(order)), st.sampled_from(pairs)), max_size=4),
        label="repeats",
    )
    for at, pair in repeats:
        order.insert(at, pair)
    return order


@given(data=st.data())
def test_one_byzantine_of_four_never_gets_two_certificates(data: st.DataObject) -> None:
    byz = data.draw(st.integers(0, 3), label="byzantine")
    net = Network([1, 1, 1, 1], {byz})
    history = data.draw(HISTORY, label="history")
    x, y = double_spend(net, history, [data.draw(SPENDS), data.draw(SPENDS)])
    certs = run(net, [x, y], deliveries(data, 4))
    check_safety(net, [x, y], certs)
    # with every delivery made, three honest validators split 2-1 or 3-0,
    # so exactly one entry is certified
    assert len(certs) == 1


# (weights, Byzantine sets weighing less than 2q - T)
PROFILES = [
    ([1, 1, 1, 1], [{0}, {1}, {2}, {3}, set()]),
    ([2, 1, 1, 1], [{0}, {1}, {3}, {1, 2}, {2, 3}]),  # q = 4, 2q - T = 3
    ([5, 1, 1, 1], [{1}, {1, 2}, {1, 2, 3}]),  # q = 6: every quorum holds validator 0
    ([1] * 7, [{0, 1}, {3, 6}, {5}]),  # q = 5, 2q - T = 3
]


@given(data=st.data())
def test_byzantine_weight_below_the_bound_never_gets_two_certificates(
    data: st.DataObject,
) -> None:
    weights, sets = data.draw(st.sampled_from(PROFILES), label="weights")
    byz = data.draw(st.sampled_from(sets), label="byzantine")
    net = Network(weights, byz)
    q, total = net.economy.quorum, sum(weights)
    assert sum(weights[i] for i in byz) < 2 * q - total
    x, y = double_spend(net, data.draw(HISTORY), [data.draw(SPENDS), data.draw(SPENDS)])
    order = deliveries(data, len(weights))
    dropped = data.draw(st.sets(st.integers(0, len(order) - 1), max_size=3), label="dropped")
    order = [d for k, d in enumerate(order) if k not in dropped]
    check_safety(net, [x, y], run(net, [x, y], order))


def test_redelivery_revotes_without_new_locks() -> None:
    net = Network([1, 1, 1, 1], set())
    x, y = double_spend(net, [10], [(B, 5), (C, 6)])
    h = net.honest[0]
    locks_after_history = dict(h.locks)
    first = h.deliver(x)
    assert first is not None
    new_locks = {r: i for r, i in h.locks.items() if r not in locks_after_history}
    assert set(new_locks) == set(resources(x.entry))
    assert set(new_locks.values()) == {x.id}
    log = list(h.lock_log)
    for _ in range(3):
        again = h.deliver(x)
        assert again == first
        assert lock_decision(h.locks, x.id, resources(x.entry)) == ()
        assert h.lock_log == log
    # the conflicting entry is refused and locks nothing
    assert h.deliver(y) is None
    with pytest.raises(Refused) as info:
        lock_decision(h.locks, y.id, resources(y.entry))
    assert info.value.reason is Reason.RESOURCE_LOCKED
    assert h.lock_log == log
    assert h.deliver(x) == first


def test_honest_validators_split_two_two_certify_neither() -> None:
    """All honest: a double-spender who splits them evenly gets nothing (the
    author's own liveness is the price of equivocating)."""
    net = Network([1, 1, 1, 1], set())
    x, y = double_spend(net, [], [(B, 5), (B, 6)])
    certs = run(net, [x, y], [(0, 0), (1, 0), (2, 1), (3, 1), (0, 1), (1, 1), (2, 0), (3, 0)])
    assert certs == {}
    check_safety(net, [x, y], certs)


def forks(weights: Sequence[int], byz: set[int]) -> list[tuple[tuple[int, int], ...]]:
    """Every order of the honest deliveries that yields two certificates."""
    honest = [i for i in range(len(weights)) if i not in byz]
    pairs = [(i, e) for i in honest for e in (0, 1)]
    net = Network(weights, byz)
    x, y = double_spend(net, [], [(B, 5), (C, 5)])
    found = []
    for order in itertools.permutations(pairs):
        net.fresh_honest()
        byz_votes = [(i, e) for i in sorted(byz) for e in (0, 1)]
        certs = run(net, [x, y], [*byz_votes, *order])
        if len(certs) == 2:
            found.append(order)
            # Both are valid certificates; a ledger that meets both detects
            # the fork (conflict) but cannot tell which one is right. It
            # keeps the pair as evidence, which names exactly the Byzantine
            # validators: the honest ones each signed one entry only.
            for cert in certs.values():
                cert.verify(net.economy)
            ledger = Ledger(net.economy)
            assert ledger.apply(certs[0]) == [certs[0].entry_id]
            with pytest.raises(Refused) as info:
                ledger.apply(certs[1])
            assert info.value.reason is Reason.CONFLICT
            [evidence] = ledger.forks
            guilty = evidence.verify(net.economy)
            assert guilty == tuple(net.world.vkeys[i].public for i in sorted(byz))
    return found


@pytest.mark.parametrize("byz", [set(p) for p in itertools.combinations(range(4), 2)])
def test_two_byzantine_of_four_can_fork(byz: set[int]) -> None:
    """Weight 2 of 4 is exactly ``2q - T``: two quorums {byz, h1} and
    {byz, h2} can share only Byzantine validators. Whenever the two honest
    validators see different entries first, both entries are certified —
    so the one-in-four tolerance above is the best this quorum allows."""
    found = forks([1, 1, 1, 1], byz)
    assert found
    h1, h2 = sorted(set(range(4)) - byz)
    for order in found:
        first_seen = {i: next(e for j, e in order if j == i) for i in (h1, h2)}
        assert first_seen[h1] != first_seen[h2]
    # Of the 24 orders of the four honest deliveries, which entry each honest
    # validator sees first is independent and even: 6 orders for each of the
    # four combinations, 12 of them splitting h1 and h2.
    assert len(found) == 12


def test_bound_is_by_weight_not_count() -> None:
    """One Byzantine validator of weight 5 in [5, 1, 1, 1] (q = 6,
    2q - T = 4) forks the economy, though three light ones cannot."""
    assert forks([5, 1, 1, 1], {0})
    assert not forks([5, 1, 1, 1], {1, 2, 3})


# -- payment channels: close xor refund ------------------------------------------------------

ESCROW = 300
#: The settlements of one channel A opened to B: closes by B with an older
#: and a newer voucher (both at B's next seq), refunds by A with B's release
#: and after expiry (both at A's next seq).
SETTLEMENTS = ("close-old", "close-new", "refund-release", "refund-expired")


def open_channel(net: Network) -> bytes:
    w = net.world
    signed = w.entry(A, ChannelOpen(B.public, ESCROW, w.clock + 1 + 3_600_000))
    votes = [v for n in net.nodes if (v := n.deliver(signed)) is not None]
    cert = assemble(net.economy, signed, votes)
    for ledger in (w.ledger, *(h.ledger for h in net.honest)):
        assert ledger.apply(cert) == [signed.id]
    return cert.entry_id


def settlement(net: Network, channel: bytes, which: str) -> SignedEntry:
    w = net.world
    state = channel_state(w.ledger.state, channel)
    assert state is not None
    if which.startswith("close"):
        cumulative = 100 if which == "close-old" else 250
        body = ChannelClose.of(state, Voucher(w.id, channel, cumulative).sign(A))
        return w.entry(B, body)
    if which == "refund-release":
        return w.entry(A, ChannelRefund.of(state, Release(w.id, channel, 40).sign(B)))
    return w.entry(A, ChannelRefund.of(state), ts_ms=state.refund_after_ms + 1)


@given(data=st.data())
def test_a_channel_is_settled_at_most_once_with_one_byzantine_of_four(
    data: st.DataObject,
) -> None:
    byz = data.draw(st.integers(0, 3), label="byzantine")
    net = Network([1, 1, 1, 1], {byz})
    channel = open_channel(net)
    kinds = data.draw(st.lists(st.sampled_from(SETTLEMENTS), min_size=2, max_size=4, unique=True))
    entries = [settlement(net, channel, k) for k in kinds]
    for h in net.honest:  # each is valid on its own
        for signed in entries:
            assert h.ledger.check(signed).ok
    certs = run(net, entries, deliveries(data, 4, len(entries)))
    assert len(certs) <= 1
    if len(entries) == 2:
        # three honest validators split 2-1 or 3-0 between the two
        assert len(certs) == 1
    for h in net.honest:  # each honest validator voted for one settlement at most
        assert len({s.id for s in entries} & h.votes.keys()) <= 1
    if not certs:
        return
    ((winner, cert),) = certs.items()
    before = {k: net.world.ledger.account(k.public).balance for k in (A, B)}
    for ledger in (net.world.ledger, *(h.ledger for h in net.honest)):
        assert ledger.apply(cert) == [cert.entry_id]
    after = {k: net.world.ledger.account(k.public).balance for k in (A, B)}
    paid = (after[A] - before[A]) + (after[B] - before[B])
    assert paid == ESCROW  # exactly the escrow, split between the two
    state = channel_state(net.world.ledger.state, channel)
    assert state is not None
    assert state.settled_by == cert.entry_id
    for i, loser in enumerate(entries):
        if i != winner:
            for h in net.honest:
                assert h.ledger.check(loser).reason in (Reason.SEQ_REUSED, Reason.CHANNEL_SETTLED)
    # No later close, with any voucher, is certified: every honest validator
    # refuses it (settled, and the channel is locked), the Byzantine one alone
    # is no quorum.
    for cumulative in (50, 299):
        later = net.world.entry(
            B, ChannelClose.of(state, Voucher(net.world.id, channel, cumulative).sign(A))
        )
        votes = [v for n in net.nodes if (v := n.deliver(later)) is not None]
        assert net.weight(votes) == 1
        with pytest.raises(Refused) as info:
            assemble(net.economy, later, votes)
        assert info.value.reason is Reason.QUORUM_NOT_REACHED
