"""Property tests of governance and epochs (DESIGN §7) with up to the
Byzantine bound ``f = 2q - T - 1`` of faulty weight in every committee.

The model extends the Byzantine simulation of ``test_byzantine.py`` to
epochs. Each validator is a :class:`Node`: its own stale :class:`Ledger`
(it applies what it has learnt only when a check needs it), its lock table,
the ballots it holds. An honest node checks with ``ledger.check`` at the
network's clock, locks with ``lock_decision`` and votes in its current
epoch; a Byzantine node votes for everything in every epoch it was ever a
validator of, seals anything and snapshots anything. Whoever collects
votes forms a certificate for an epoch as soon as that epoch's committee
reached its quorum — also for an old epoch, after the committee moved on,
with the Byzantine and the slow validators' votes. At every epoch change the
old committee snapshots its locks and ballots (slow validators do not: they
keep voting in the old epoch) and every validator of the new committee —
new or staying, up to all of them replaced — seeds from a quorum of those
snapshots chosen by hypothesis (``handover.seed``).

Properties:

* (a) an enactment's tally — from any quorum of seals, honest or not, the
  enactor can build a body from — counts every certified ballot, including
  ballots certified in the epoch before the committee changed;
* (b) at most one enactment is certified per epoch number, whatever the
  race between enactors;
* (c) across a committee change, no two certificates (in any epochs) for
  entries that consume one resource: an author's slot, and a proposal's
  outcome (an objection in the old epoch against an enactment in the new);
* (d) every node that applies the same certificates, in any order that
  respects each author's seq, ends with the same committee and policy in
  every epoch, and the same state;
* (e) every certificate of every epoch verifies offline from the genesis
  plus the committee chain.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hypothesis import event, given
from hypothesis import strategies as st

from mycelia.protocol import (
    Certificate,
    Economy,
    Ledger,
    MemberAdmit,
    Reason,
    Refused,
    SignedEntry,
    SigningKey,
    Transfer,
    Vote,
    assemble,
)
from mycelia.protocol.economy import DAY_MS, byzantine_bound
from mycelia.protocol.epochs import CommitteeChain
from mycelia.protocol.gov_bodies import (
    CONSENT,
    MAJORITY,
    Ballot,
    CommitteeSet,
    GovDelegate,
    GovEnact,
    GovObject,
    GovPropose,
    GovVote,
    Method,
    PolicySet,
    Tally,
    decode_ballot,
)
from mycelia.protocol.governance import BALLOT_FACT, enactment
from mycelia.protocol.handover import LockSnapshot, seed, snapshot
from mycelia.protocol.locks import lock_decision, resources
from mycelia.protocol.seals import Held, Seal, open_seals
from mycelia.protocol.state import fact_key
from mycelia.protocol.tally import count, relevant
from mycelia.testing.economies import genesis, validator_keys
from mycelia.testing.governance import GovWorld, new_validators
from tests.protocol.gov_scenarios import MEMBERS, STEWARD

#: (weights, and the Byzantine index sets within the bound) of the committees
PROFILES = [
    ([1, 1, 1, 1], [set(), {0}, {1}, {3}]),
    ([2, 1, 1, 1], [set(), {0}, {1, 2}]),  # q = 4, f = 2
    ([1] * 7, [set(), {0, 1}, {2, 6}]),  # q = 5, f = 2
]


@dataclass
class Node:
    key: SigningKey
    ledger: Ledger
    byzantine: bool = False
    locks: dict[bytes, bytes] = field(default_factory=dict)
    held: dict[bytes, Held] = field(default_factory=dict)
    inbox: list[Certificate] = field(default_factory=list)
    #: epochs it snapshotted (an honest node never votes in them again)
    retired: set[int] = field(default_factory=set)
    #: a slow node never learns the enactment that moves it past this epoch
    slow_in: int | None = None
    #: every epoch it was a validator of (a Byzantine node votes in each)
    epochs: set[int] = field(default_factory=set)

    @property
    def public(self) -> bytes:
        return self.key.public

    def catch_up(self) -> None:
        pending, self.inbox = self.inbox, []
        while pending:
            retry = []
            for cert in pending:
                if self.slow_in is not None and cert.epoch == self.slow_in and _moves_on(cert):
                    continue
                try:
                    self.ledger.apply(cert)
                except Refused as exc:
                    assert exc.reason is Reason.WRONG_EPOCH, exc
                    retry.append(cert)
            if len(retry) == len(pending):
                self.inbox = retry
                return
            pending = retry

    def votes(self, signed: SignedEntry, now: int) -> list[Vote]:
        """The votes this node casts for ``signed`` now (one per epoch)."""
        econ = self.ledger.economy
        if self.byzantine:
            return [Vote.make(self.key, econ.id, e, signed.id) for e in sorted(self.epochs)]
        verdict = self.ledger.check(signed, now_ms=now)
        if not verdict.ok:
            self.catch_up()
            econ = self.ledger.economy
            verdict = self.ledger.check(signed, now_ms=now)
        if not verdict.ok or self.public not in econ.index or econ.epoch in self.retired:
            return []
        try:
            new = lock_decision(self.locks, signed.id, resources(signed.entry))
        except Refused as exc:
            assert exc.reason is Reason.RESOURCE_LOCKED
            return []
        self.locks.update(dict.fromkeys(new, signed.id))
        if isinstance(signed.entry.body, GovVote | GovDelegate):
            self.held[signed.id] = Held.of(signed.id, signed.entry)
        return [Vote.make(self.key, econ.id, econ.epoch, signed.id)]


def _moves_on(cert: Certificate) -> bool:
    return isinstance(cert.entry.body, GovEnact)


class Net:
    """The validators of every epoch, a submitter, and the full history."""

    def __init__(
        self,
        data: st.DataObject,
        weights: Sequence[int],
        byzantine: set[int],
        spare: Sequence[SigningKey] = (),
    ) -> None:
        self.data = data
        vk = validator_keys(len(weights))
        g = genesis(
            validators=vk, weights=weights, membership="approved", stewards=[STEWARD], nonce=b"p"
        )
        self.world = GovWorld(g, vk, spare=spare)
        self.genesis_economy = self.world.economy
        self.nodes = {
            k.public: Node(k, Ledger(self.genesis_economy), i in byzantine, epochs={0})
            for i, k in enumerate(vk)
        }
        for k in spare:
            self.nodes[k.public] = Node(k, Ledger(self.genesis_economy))
        self.votes: dict[tuple[bytes, int], dict[bytes, Vote]] = {}
        #: every certificate formed, in order
        self.certs: list[Certificate] = []
        self.now = self.world.clock

    # -- submitting ----------------------------------------------------------------------

    @property
    def economy(self) -> Economy:
        return self.world.economy

    def committee(self, epoch: int | None = None) -> list[Node]:
        econ = self.economy.at(self.economy.epoch if epoch is None else epoch)
        return [self.nodes[k] for k in econ.validators]

    def tick(self, to: int | None = None) -> int:
        self.now = max(self.now + 1, self.world.clock + 1) if to is None else to
        self.world.at(self.now)
        return self.now

    def entry(self, author: SigningKey, body: object, **kw: int | bytes) -> SignedEntry:
        self.tick()
        return self.world.entry(author, body, **kw)  # type: ignore[arg-type]

    def deliver(self, signed: SignedEntry, to: Iterable[Node]) -> list[Certificate]:
        """``signed`` to the nodes ``to`` in that order; the certificates
        (one per epoch whose committee reached quorum) it then has."""
        for node in to:
            for vote in node.votes(signed, self.now):
                self.votes.setdefault((signed.id, vote.epoch), {})[vote.validator] = vote
        return self.certify(signed)

    def certify(self, signed: SignedEntry) -> list[Certificate]:
        out = []
        for epoch in range(self.economy.epoch + 1):
            got = self.votes.get((signed.id, epoch), {})
            econ = self.economy.at(epoch)
            mine = [v for k, v in got.items() if k in econ.index]
            if econ.weight(econ.index[v.validator] for v in mine) < econ.quorum:
                continue
            cert = assemble(econ, signed, mine)
            if all((c.entry_id, c.epoch) != (cert.entry_id, cert.epoch) for c in self.certs):
                self.certs.append(cert)
                self.publish(cert)
            out.append(cert)
        return out

    def publish(self, cert: Certificate) -> None:
        before = self.economy.epoch
        try:
            self.world.ledger.apply(cert)
        except Refused as exc:
            # the other side of a conflict is kept out of the history, so the
            # safety assertions (not this one) report the double certificate
            assert exc.reason is Reason.CONFLICT, exc
        for node in self.nodes.values():
            node.inbox.append(cert)
        while self.economy.epoch > before:
            self.handover(before)
            before += 1

    def everyone(self) -> list[Node]:
        nodes = self.committee()
        order = self.data.draw(st.permutations(range(len(nodes))), label="order")
        return [nodes[i] for i in order]

    def commit(self, author: SigningKey, body: object) -> Certificate:
        """Delivered to the whole committee in force: certified."""
        signed = self.entry(author, body)
        certs = self.deliver(signed, self.everyone())
        assert certs, f"{signed.entry.kind} not certified"
        return certs[0]

    def some(self, label: str) -> list[Node]:
        """Some validators in force, in some order."""
        nodes = self.committee()
        chosen = self.data.draw(st.lists(st.integers(0, len(nodes) - 1), unique=True), label=label)
        return [nodes[i] for i in chosen]

    # -- the handover --------------------------------------------------------------------

    def handover(self, epoch: int) -> None:
        """The committee of ``epoch`` snapshots, that of ``epoch + 1`` seeds."""
        old, new = self.committee(epoch), self.committee(epoch + 1)
        econ = self.economy
        staying = {n.public for n in new}
        committee = econ.committee(epoch)
        honest_leaving = [n for n in old if not n.byzantine and n.public not in staying]
        picks = self.data.draw(
            st.lists(st.integers(0, max(0, len(honest_leaving) - 1)), unique=True)
            if honest_leaving
            else st.just([]),
            label="slow",
        )
        slow: list[Node] = []
        for node in (
            honest_leaving[i] for i in picks
        ):  # slow ones only as long as the others weigh a quorum
            left = [n for n in old if n is not node and all(n is not s for s in slow)]
            if (
                committee.weight_of(committee.keys.index(n.public) for n in left)
                >= committee.quorum
            ):
                slow.append(node)
        offered = []
        for node in old:
            if any(node is s for s in slow):
                node.slow_in = epoch  # keeps voting in the old epoch
                continue
            if node.byzantine:
                offered.append(self.lying_snapshot(node, epoch))
            else:
                node.retired.add(epoch)
                offered.append(snapshot(node.key, econ.at(epoch), node.locks, node.held.values()))
        committee = econ.committee(epoch)
        signer = {parts[0].validator: parts for parts in offered}
        order = list(self.data.draw(st.permutations(sorted(signer)), label="snapshots"))
        chosen: list[bytes] = []
        for k in order:  # a quorum of them, in an order hypothesis picks
            chosen.append(k)
            if committee.weight_of(committee.keys.index(c) for c in chosen) >= committee.quorum:
                break
        seeded = seed(econ, epoch, [p for k in chosen for p in signer[k]])
        for node in new:
            node.epochs.add(epoch + 1)
            if node.byzantine:
                continue
            node.locks = dict(seeded.locks)
            node.held = {h.ballot: h for h in seeded.held}
            node.slow_in = None
            node.catch_up()

    def lying_snapshot(self, node: Node, epoch: int) -> list[LockSnapshot]:
        """A Byzantine snapshot: some real locks dropped, some moved to the
        wrong entry, some ballots left out."""
        seen = sorted({(r, e) for n in self.nodes.values() for r, e in n.locks.items()})
        keep = (
            self.data.draw(st.lists(st.sampled_from(seen), unique=True), label="lie")
            if seen
            else []
        )
        locks: dict[bytes, bytes] = {}
        for r, e in keep:
            locks[r] = e if self.data.draw(st.booleans(), label="true lock") else b"\x0c" * 32
        held = [h for n in self.nodes.values() for h in n.held.values()]
        lie = held[: self.data.draw(st.integers(0, len(held)), label="held")]
        return snapshot(node.key, self.economy.at(epoch), locks, lie)

    # -- seals and enactments ------------------------------------------------------------

    def seals(self, proposal: Certificate) -> list[Seal]:
        """Every validator's seal in force: honest ones list what they hold."""
        record = self.world.record(proposal)
        econ = self.economy
        ballots = sorted({h.ballot for n in self.nodes.values() for h in n.held.values()})
        out = []
        for node in self.committee():
            if node.byzantine:
                junk = self.data.draw(
                    st.lists(st.sampled_from([*ballots, b"\x0d" * 32]), unique=True), label="junk"
                )
                out.append(Seal.make(node.key, econ, proposal.entry_id, junk))
            else:
                node.catch_up()
                out.append(
                    Seal.make(
                        node.key,
                        econ,
                        proposal.entry_id,
                        [
                            h.ballot
                            for h in node.held.values()
                            if h.counts_for(proposal.entry_id, record)
                        ],
                    )
                )
        assert record.close_ms <= self.now
        return out

    def certified_ballots(self, proposal: Certificate) -> dict[bytes, Ballot]:
        record = self.world.record(proposal)
        out: dict[bytes, Ballot] = {}
        for c in self.certs:
            raw = self.world.ledger.state.get_record(fact_key(BALLOT_FACT, c.entry_id))
            if raw is not None and relevant(proposal.entry_id, record, decode_ballot(raw)):
                out[c.entry_id] = decode_ballot(raw)
        return out

    def sealed_enactment(self, proposal: Certificate) -> GovEnact | None:
        """An enactment from a quorum of seals hypothesis chooses, or None
        when that quorum requires a ballot nobody certified."""
        seals = self.seals(proposal)
        econ = self.economy
        order = list(self.data.draw(st.permutations(range(len(seals))), label="sealers"))
        chosen = []
        for i in order:
            chosen.append(seals[i])
            if econ.weight(econ.index[s.validator] for s in chosen) >= econ.quorum:
                break
        try:
            body = enactment(econ, self.world.ledger.state, proposal.entry_id, seals=chosen)
        except Refused as exc:
            assert exc.reason is Reason.MISSING, exc
            (need,) = exc.needs
            assert all(c.entry_id != need.id for c in self.certs)  # type: ignore[union-attr]
            return None
        # (a): every certified ballot is in the union, required, and counted
        union = open_seals(econ, proposal.entry_id, body)
        certified = self.certified_ballots(proposal)
        assert set(certified) <= set(union.required())
        record = self.world.record(proposal)
        assert body.tally == count(proposal.entry_id, record, certified, lambda _a: True)
        return body


# -- (a): a sealed tally in one epoch -----------------------------------------------------------


@given(data=st.data())
def test_a_sealed_tally_counts_every_certified_ballot(data: st.DataObject) -> None:
    weights, byz_sets = data.draw(st.sampled_from(PROFILES), label="profile")
    net = Net(data, weights, data.draw(st.sampled_from(byz_sets), label="byzantine"))
    for m in MEMBERS:
        net.commit(STEWARD, _admit(m))
    quadratic = data.draw(st.booleans(), label="quadratic")
    method = Method("quadratic") if quadratic else Method(MAJORITY, 1 + len(MEMBERS))
    p = net.commit(STEWARD, _propose(net, method, 3 * DAY_MS))
    for i, voter in enumerate(MEMBERS):
        if quadratic:
            choice = data.draw(st.sampled_from(["yes", "no"]), label="choice")
            signed = net.entry(voter, GovVote(p.entry_id, choice, data.draw(st.integers(1, 10))))
        else:
            signed = _ballot(net, voter, p)
        net.deliver(signed, net.some(f"ballot {i}"))
    net.tick(net.world.record(p).close_ms)
    body = net.sealed_enactment(p)  # asserts (a) when the seals allow a body
    if body is not None:
        net.deliver(net.entry(STEWARD, body), net.everyone())
    event(f"enactment {'built' if body else 'none'}; epoch {net.economy.epoch}")
    check_history(net)


# -- (a), (c): ballots, a double spend and an objection across a committee change -----------------


@given(data=st.data())
def test_a_committee_handover_keeps_every_lock_and_every_ballot(data: st.DataObject) -> None:
    weights, byz_sets = data.draw(st.sampled_from(PROFILES), label="profile")
    n = len(weights)
    byz0 = data.draw(st.sampled_from(byz_sets), label="byzantine 0")
    replaced = data.draw(st.integers(0, n), label="replaced")
    spare = new_validators(replaced, start=200)
    net = Net(data, weights, byz0, spare)
    keep = [k for k in net.economy.validators][: n - replaced]
    new_keys = [*keep, *(k.public for k in spare)]
    # the new committee's Byzantine validators: the staying ones that were,
    # and more if the bound allows
    byz1 = {i for i, k in enumerate(new_keys) if net.nodes[k].byzantine}
    extra = data.draw(st.sampled_from(byz_sets), label="byzantine 1")
    f = byzantine_bound(sum(weights), net.economy.quorum)
    old_index = {k: i for i, k in enumerate(net.economy.validators)}
    # a staying validator turned Byzantine is Byzantine in epoch 0 too
    byz0_after = byz0 | {old_index[new_keys[i]] for i in extra if new_keys[i] in old_index}
    if sum(weights[i] for i in byz1 | extra) <= f and sum(weights[i] for i in byz0_after) <= f:
        byz1 |= extra
    for i in byz1:
        net.nodes[new_keys[i]].byzantine = True
    for m in MEMBERS:
        net.commit(STEWARD, _admit(m))
    electorate = 1 + len(MEMBERS)
    vote_ms = 10 * DAY_MS
    p = net.commit(STEWARD, _propose(net, Method(MAJORITY, electorate), vote_ms))
    q = net.commit(STEWARD, _propose(net, Method(CONSENT), vote_ms, limit=5))
    k_payload = net.world.committee_set(
        [net.world.keyring[k] for k in new_keys], [weights[i] for i in range(n)]
    )
    k = net.commit(STEWARD, _propose(net, Method(CONSENT), 3 * DAY_MS, payload=k_payload))
    payer, other = MEMBERS[7], MEMBERS[8]
    x = net.entry(payer, Transfer(other.public, 5))
    y = net.entry(payer, Transfer(STEWARD.public, 6), seq=x.entry.seq, prev=x.entry.prev)
    objection = net.entry(MEMBERS[6], GovObject(q.entry_id))
    voters = MEMBERS[:6]
    # epoch 0: part of everything reaches part of the committee
    for signed, label in [(x, "x0"), (y, "y0"), (objection, "o0")]:
        net.deliver(signed, net.some(label))
    split = data.draw(st.integers(0, len(voters)), label="ballots in epoch 0")
    for i, v in enumerate(voters[:split]):
        net.deliver(_ballot(net, v, p), net.some(f"ballot {i}"))
    # the committee change (and its handover)
    net.tick(net.world.record(k).close_ms)
    net.commit(STEWARD, net.world.enactment(k))
    assert net.economy.epoch == 1
    assert set(net.economy.validators) == set(new_keys)
    # epoch 1: the rest, to the new committee and to the old one's slow and Byzantine
    old_voters = [nd for nd in net.committee(0) if nd.slow_in == 0 or nd.byzantine]
    for signed, label in [(x, "x1"), (y, "y1"), (objection, "o1")]:
        net.deliver(signed, [*net.some(label), *old_voters])
    for i, v in enumerate(voters[split:]):
        net.deliver(_ballot(net, v, p), [*net.some(f"late ballot {i}"), *old_voters])
    # after the close: the sealed tally of p, the outcome of q
    net.tick(net.world.record(p).close_ms + 1)
    body = net.sealed_enactment(p)
    if body is not None:
        net.deliver(net.entry(STEWARD, body), net.everyone())
    enact_q = net.entry(STEWARD, GovEnact(q.entry_id, net.economy.epoch + 1, _zero()))
    net.deliver(enact_q, [*net.everyone(), *old_voters])
    certified = {c.entry_id for c in net.certs}
    event(f"replaced {replaced}/{n}")
    event(f"x {x.id in certified} y {y.id in certified}")
    event(f"objection {objection.id in certified} enact {enact_q.id in certified}")
    event(f"sealed enactment {'built' if body else 'none'}, epoch {net.economy.epoch}")
    event(f"old-epoch certificates after the change: {sum(c.epoch == 0 for c in net.certs[-20:])}")
    # (c): one certificate per resource, whatever the epochs
    assert not (x.id in certified and y.id in certified)
    assert not (objection.id in certified and enact_q.id in certified)
    check_history(net)


def _admit(m: SigningKey) -> MemberAdmit:
    return MemberAdmit(m.public)


def _zero() -> Tally:
    return Tally()


def _propose(
    net: Net,
    method: Method,
    voting_ms: int,
    *,
    limit: int = 2_000,
    payload: PolicySet | CommitteeSet | None = None,
) -> GovPropose:
    body = payload if payload is not None else PolicySet((("default_limit", limit),))
    action = "committee.set" if isinstance(body, CommitteeSet) else "policy.set"
    return GovPropose(action, body, method, net.world.clock + 10 + voting_ms)


def _ballot(net: Net, voter: SigningKey, p: Certificate) -> SignedEntry:
    kind = net.data.draw(st.sampled_from(["yes", "no", "abstain", "delegate"]), label="ballot")
    if kind == "delegate":
        to = net.data.draw(st.sampled_from([m for m in MEMBERS[:6] if m != voter]), label="to")
        return net.entry(voter, GovDelegate(to.public, b"", net.now + 30 * DAY_MS))
    return net.entry(voter, GovVote(p.entry_id, kind))


def check_history(net: Net) -> None:
    """(b), (d), (e) over everything certified."""
    by_epoch: dict[int, set[bytes]] = {}
    for c in net.certs:
        body = c.entry.body
        if isinstance(body, GovEnact) and body.epoch == c.epoch + 1:
            by_epoch.setdefault(body.epoch, set()).add(c.entry_id)
    # (b): at most one enactment per epoch number
    assert all(len(ids) == 1 for ids in by_epoch.values()), by_epoch
    truth = net.world.ledger
    # (e): every certificate verifies from the genesis plus the committee chain
    chain = CommitteeChain.build(truth.economy, truth.state.certificate)
    offline = CommitteeChain.decode(chain.encode()).verify(Economy.from_genesis(net.world.genesis))
    assert offline.epoch == truth.economy.epoch
    for c in net.certs:
        c.verify(offline)
    # (d): any order that respects each author's seq gives the same epochs and state
    rnd = random.Random(net.data.draw(st.integers(0, 2**32), label="replay"))
    for _ in range(2):
        fresh = Ledger(Economy.from_genesis(net.world.genesis))
        pending = list(net.certs)
        rnd.shuffle(pending)
        while pending:
            retry = []
            for c in pending:
                try:
                    fresh.apply(c)
                except Refused as exc:
                    assert exc.reason in (Reason.WRONG_EPOCH, Reason.CONFLICT), exc
                    if exc.reason is Reason.WRONG_EPOCH:
                        retry.append(c)
            assert len(retry) < len(pending)
            pending = retry
        assert fresh.pending_count == 0
        assert fresh.state.snapshot() == truth.state.snapshot()
        assert fresh.economy.epochs == truth.economy.epochs


# -- (b), (d), (e): enactments racing for each epoch, committee changes among them ------------


@given(data=st.data())
def test_racing_enactments_make_one_epoch_each_and_every_node_agrees(data: st.DataObject) -> None:
    weights, byz_sets = data.draw(st.sampled_from(PROFILES), label="profile")
    byz = data.draw(st.sampled_from(byz_sets), label="byzantine")
    n = len(weights)
    spare = new_validators(n, start=300)
    net = Net(data, weights, byz, spare)
    for m in MEMBERS:
        net.commit(STEWARD, _admit(m))
    proposals = []
    for j in range(data.draw(st.integers(2, 3), label="proposals")):
        if data.draw(st.booleans(), label="committee change"):
            # replace some validators by spare ones, keeping the weights
            cut = data.draw(st.integers(0, n), label="replace")
            keys_ = [*net.economy.validators[cut:], *(k.public for k in spare[j::3][:cut])]
            keys_ = keys_ + [k.public for k in spare if k.public not in keys_][: n - len(keys_)]
            payload = net.world.committee_set([net.world.keyring[k] for k in keys_[:n]], weights)
        else:
            payload = PolicySet((("default_limit", 100 + j),))
        proposals.append(
            net.commit(STEWARD, _propose(net, Method(CONSENT), 3 * DAY_MS, payload=payload))
        )
    net.tick(max(net.world.record(p).close_ms for p in proposals) + 1)
    enactors = iter(MEMBERS)
    for _round in range(3):
        open_ = [p for p in proposals if not _enacted(net, p)]
        if not open_:
            break
        attempts = [
            net.entry(next(enactors), GovEnact(p.entry_id, net.economy.epoch + 1, _zero()))
            for p in open_
        ]
        committee = net.committee()
        pairs = [(a, k) for a in range(len(attempts)) for k in range(len(committee))]
        order = data.draw(st.permutations(pairs), label="deliveries")
        dropped = data.draw(st.sets(st.integers(0, len(pairs) - 1), max_size=2), label="dropped")
        for i, (a, k) in enumerate(order):
            if i not in dropped:  # also after a winner: stale nodes and Byzantine ones
                net.deliver(attempts[a], [committee[k]])
        won = [a for a in attempts if any(c.entry_id == a.id for c in net.certs)]
        assert len(won) <= 1
        event(f"round {_round}: {'won' if won else 'split'}")
    event(f"epochs {net.economy.epoch}")
    check_history(net)


def _enacted(net: Net, p: Certificate) -> bool:
    return net.world.ledger.state.get_record(fact_key("gov.outcome", p.entry_id)) is not None
