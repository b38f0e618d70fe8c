"""Lock snapshots, the seed rule, seals and the committee chain as
structures: their bytes round-trip, their signatures are checked, and each
rule of ``handover.seed`` (kept, dropped, split, lost enactments,
incomplete snapshots) and of ``CommitteeChain.verify`` holds on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from mycelia.protocol import Economy, Reason, Refused
from mycelia.protocol.epochs import ChainLink, CommitteeChain
from mycelia.protocol.gov_bodies import CONSENT, Method
from mycelia.protocol.handover import SPLIT, LockSnapshot, seed, snapshot
from mycelia.protocol.locks import resource_key
from mycelia.protocol.seals import Held, Seal
from mycelia.testing.economies import key, validator_keys
from mycelia.testing.governance import GovWorld, new_validators
from tests.protocol.gov_scenarios import MEMBERS, RAISE, STEWARD, council

R1, R2, R3 = (bytes([n]) * 32 for n in (1, 2, 3))
X, Y = b"\x0a" * 32, b"\x0b" * 32


def refused(fn: Callable[[], object]) -> Reason:
    with pytest.raises(Refused) as info:
        fn()
    return info.value.reason


def moved() -> tuple[GovWorld, bytes]:
    """A council in epoch 1 (a policy change), and the enactment that made it."""
    w = council()
    p = w.propose(STEWARD, RAISE, Method(CONSENT))
    w.close(p)
    cert = w.enact(STEWARD, w.enactment(p))
    assert w.economy.epoch == 1
    return w, cert.entry_id


def snaps(
    w: GovWorld, tables: list[dict[bytes, bytes]], held: list[list[Held]] | None = None
) -> list[list[LockSnapshot]]:
    """Epoch-0 snapshots of the first validators, one per lock table."""
    vk = validator_keys(4)
    rows = held or [[] for _ in tables]
    return [
        snapshot(vk[i], w.economy.at(0), t, h)
        for i, (t, h) in enumerate(zip(tables, rows, strict=True))
    ]


def flat(parts: list[list[LockSnapshot]]) -> list[LockSnapshot]:
    return [p for ps in parts for p in ps]


def test_a_snapshot_round_trips_and_is_checked() -> None:
    w, _ = moved()
    held = [Held(Y, True, R3, 5), Held(X, False, b"", 4, 99)]
    [part] = snapshot(validator_keys(4)[1], w.economy.at(0), {R2: X, R1: Y}, held)
    assert [r for r, _ in part.locks] == [R1, R2]
    assert [h.ballot for h in part.ballots] == [X, Y]
    again = LockSnapshot.decode(part.encode())
    assert again == part
    assert again.verify(w.economy) == 1
    forged = dataclasses.replace(part, locks=((R1, X),))
    assert refused(lambda: forged.verify(w.economy)) is Reason.BAD_SEAL
    outsider = snapshot(key(99, "validator"), w.economy.at(0), {R1: X}, [])[0]
    assert refused(lambda: outsider.verify(w.economy)) is Reason.BAD_SEAL
    assert refused(lambda: LockSnapshot.decode(part.encode()[:-1])) is Reason.NON_CANONICAL


def test_a_large_snapshot_comes_in_parts_and_counts_only_complete() -> None:
    w, _ = moved()
    table = {bytes([i]) * 32: X for i in range(1, 8)}
    vk = validator_keys(4)
    parts = [snapshot(k, w.economy.at(0), table, [], part_locks=3) for k in vk]
    assert [len(p) for p in parts] == [3, 3, 3, 3]
    assert all(p.parts == 3 for p in parts[0])
    seeded = seed(w.economy, 0, flat(parts))
    assert seeded.locks == table
    # two validators' snapshots lack a part: the other two are no quorum
    short = [*flat(parts[:2]), *parts[2][:2], *parts[3][1:]]
    assert refused(lambda: seed(w.economy, 0, short)) is Reason.QUORUM_NOT_REACHED
    # one incomplete: the three complete ones still are
    assert seed(w.economy, 0, [*flat(parts[:3]), *parts[3][:2]]).locks == table


def test_the_seed_keeps_what_could_be_certified_and_splits_conflicts() -> None:
    w, _ = moved()
    # 4 validators of weight 1, q = 3, f = 1; all four snapshot (no unsnapshotted
    # weight): kept iff held by at least 3 - 0 - 1 = 2
    tables = [{R1: X, R2: X}, {R1: X, R2: Y}, {R2: Y, R3: X}, {}]
    seeded = seed(w.economy, 0, flat(snaps(w, tables)))
    assert seeded.locks == {R1: X, R2: Y}  # R3 held once: never certified
    tables = [{R1: X, R2: X}, {R1: X, R2: X}, {R2: Y}, {R2: Y}]
    assert seed(w.economy, 0, flat(snaps(w, tables))).locks == {R1: X, R2: SPLIT}
    # with only three snapshots, one validator's weight is unknown: held once suffices
    tables = [{R1: X}, {R2: Y}, {}]
    seeded = seed(w.economy, 0, flat(snaps(w, tables)))
    assert seeded.locks == {R1: X, R2: Y}


def test_the_seed_drops_every_lock_of_an_enactment_that_lost_its_epoch() -> None:
    w, winner = moved()
    epoch_lock = resource_key("epoch", w.id, 1)
    outcome = resource_key("gov.outcome", w.id, b"\x0e" * 32)
    loser = b"\x0f" * 32
    tables = [
        {epoch_lock: winner},
        {epoch_lock: winner},
        {epoch_lock: loser, outcome: loser},
        {epoch_lock: loser, outcome: loser},
    ]
    seeded = seed(w.economy, 0, flat(snaps(w, tables)))
    assert seeded.locks == {epoch_lock: winner}


def test_the_seed_carries_held_ballots_that_could_be_certified() -> None:
    w, _ = moved()
    vote = Held(X, True, R3, 5)
    lone = Held(Y, True, R3, 6)
    held = [[vote], [vote, lone], [], []]
    seeded = seed(w.economy, 0, flat(snaps(w, [{}, {}, {}, {}], held)))
    assert seeded.held == (vote,)


def test_the_seed_refuses_other_epochs_and_forgeries() -> None:
    w, _ = moved()
    parts = flat(snaps(w, [{R1: X}] * 4))
    later = snapshot(validator_keys(4)[0], w.economy, {R1: X}, [])
    assert refused(lambda: seed(w.economy, 0, [*parts[1:], *later])) is Reason.WRONG_EPOCH
    forged = dataclasses.replace(parts[0], signature=bytes(64))
    assert refused(lambda: seed(w.economy, 0, [forged, *parts[1:]])) is Reason.BAD_SEAL


def test_a_seal_round_trips_and_is_checked() -> None:
    w, _ = moved()
    k = w.committee_keys()[2]
    s = Seal.make(k, w.economy, R3, [Y, X])
    assert s.ballots == (X, Y)
    again = Seal.decode(s.encode())
    assert again == s
    assert again.verify(w.economy) == 2
    tampered = dataclasses.replace(s, ballots=(X,))
    assert refused(lambda: tampered.verify(w.economy)) is Reason.BAD_SEAL
    # a seal names its epoch: epoch 1's economy checks it against epoch 1
    old = Seal.make(k, w.economy.at(0), R3, [X])
    assert old.verify(w.economy) == 2
    assert refused(lambda: Seal.make(k, w.economy, R3, [X]).verify(w.economy.at(0))) is (
        Reason.WRONG_EPOCH
    )


def chained() -> tuple[GovWorld, CommitteeChain]:
    """Three epochs: a committee change, a policy change, another committee change."""
    vk = validator_keys(4)
    w = council()
    first, second = new_validators(4), new_validators(4, start=150)
    for payload in (
        w.committee_set([vk[0], *first[:3]]),
        RAISE,
        w.committee_set(second),
    ):
        p = w.propose(STEWARD, payload, Method(CONSENT))
        w.close(p)
        w.enact(STEWARD, w.enactment(p))
    w.transfer(MEMBERS[0], MEMBERS[1], 5)
    assert w.economy.epoch == 3
    return w, CommitteeChain.build(w.economy, w.ledger.state.certificate)


def test_the_committee_chain_verifies_every_epoch_offline() -> None:
    w, chain = chained()
    decoded = CommitteeChain.decode(chain.encode())
    offline = decoded.verify(Economy.from_genesis(w.genesis))
    assert offline.epochs == w.economy.epochs
    for cert in w.ledger.state.certs.values():
        cert.verify(offline)
    # a chain from epoch 2 on verifies from the economy the first links reached
    tail = CommitteeChain.build(w.economy, w.ledger.state.certificate, first_epoch=3)
    partial = CommitteeChain(1, chain.links[:2]).verify(Economy.from_genesis(w.genesis))
    assert tail.verify(partial).epochs == w.economy.epochs


def test_a_broken_committee_chain_is_refused() -> None:
    w, chain = chained()
    genesis = Economy.from_genesis(w.genesis)
    links = chain.links
    assert refused(lambda: CommitteeChain(2, links).verify(genesis)) is Reason.WRONG_EPOCH
    skipped = CommitteeChain(1, (links[0], links[2]))
    assert refused(lambda: skipped.verify(genesis)) is Reason.WRONG_EPOCH
    swapped = CommitteeChain(1, (ChainLink(links[0].enact, links[1].proposal), *links[1:]))
    assert refused(lambda: swapped.verify(genesis)) is Reason.MALFORMED
    relabelled = dataclasses.replace(links[0].enact, signatures=links[1].enact.signatures)
    forged = CommitteeChain(1, (ChainLink(relabelled, links[0].proposal), *links[1:]))
    assert refused(lambda: forged.verify(genesis)) is Reason.BAD_SIGNATURE
    # a link whose "enactment" is another kind of certificate
    other = CommitteeChain(1, (ChainLink(links[0].proposal, links[0].proposal), *links[1:]))
    assert refused(lambda: other.verify(genesis)) is Reason.MALFORMED
