"""The validator service, without the network: votes, refusals with needs,
attached predecessors, malformed requests, and locks that survive SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import trio

from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.store import Store
from mycelia.node.validator import ValidatorService
from mycelia.protocol import Reason, Transfer
from mycelia.protocol.locks import resources
from mycelia.protocol.reasons import NeedChain
from mycelia.testing.economies import World, key, sign_genesis

ROOT = Path(__file__).resolve().parents[2]
A, B, C = key(1), key(2), key(3)


async def service(path: Path, w: World, index: int = 0) -> tuple[ValidatorService, Applier]:
    store = Store(path, sync=True)
    applier = Applier(store)
    await applier.add_economy(sign_genesis(w.genesis, w.vkeys))
    return ValidatorService(w.vkeys[index], store, applier), applier


async def test_votes_refusals_and_cures(tmp_path: Path) -> None:
    w = World()
    svc, applier = await service(tmp_path, w)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        nursery.start_soon(svc.run)
        first = w.entry(A, Transfer(B.public, 5))
        [ok] = await svc.vote(w.id, [wire.VoteItem(first)])
        assert ok.vote is not None
        assert ok.vote.entry_id == first.id
        ok.vote.verify(w.economy)
        assert svc.store.lock(resources(first.entry)[0]) == first.id

        # A conflicting entry in the same slot: resource_locked.
        twin = w.entry(A, Transfer(C.public, 5))
        [locked] = await svc.vote(w.id, [wire.VoteItem(twin)])
        assert locked.reason is Reason.RESOURCE_LOCKED
        # Asking again for the first gets the same vote.
        [again] = await svc.vote(w.id, [wire.VoteItem(first)])
        assert again.vote == ok.vote

        # The author's seq 2 before seq 1 is certified here: missing, with the need.
        cert1 = w.certify(first)
        w.ledger.apply(cert1)
        second = w.entry(A, Transfer(B.public, 5))
        [missing] = await svc.vote(w.id, [wire.VoteItem(second)])
        assert missing.reason is Reason.MISSING
        assert missing.needs == (NeedChain(A.public, 0, cert1.entry_id),)
        # Attaching the certificate cures it.
        [cured] = await svc.vote(w.id, [wire.VoteItem(second, (cert1,))])
        assert cured.vote is not None
        assert svc.store.account(w.id, A.public).seq == 1

        # Bad signature: refused, nothing locked.
        forged = type(second)(second.entry, twin.signature)
        [bad] = await svc.vote(w.id, [wire.VoteItem(forged)])
        assert bad.reason is Reason.BAD_SIGNATURE

        # An economy this node does not validate.
        [unknown] = await svc.vote(b"\x07" * 32, [wire.VoteItem(second)])
        assert unknown.reason is Reason.NOT_VALIDATOR
        nursery.cancel_scope.cancel()


async def test_malformed_requests_get_an_error_answer(tmp_path: Path) -> None:
    w = World()
    svc, applier = await service(tmp_path, w)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        nursery.start_soon(svc.run)
        for junk in (b"", b"\xc1", b"\x93\xa8vote-req\x01\x00", b"\x00" * 100):
            answer = await svc.handle("peer", junk)
            tag = wire.codec.decode(answer)[0]
            assert tag == "error"
        # still serving
        [ok] = await svc.vote(w.id, [wire.VoteItem(w.entry(A, Transfer(B.public, 1)))])
        assert ok.vote is not None
        nursery.cancel_scope.cancel()


VOTER = """
import random, sys, trio
from pathlib import Path
from mycelia.node import wire
from tests.node.test_validator import service, conflicting
async def main(path, seed):
    w, entries = conflicting()
    svc, applier = await service(Path(path), w)
    rnd = random.Random(seed)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(applier.run)
        nursery.start_soon(svc.run)
        print("ready", flush=True)
        order = list(entries)
        rnd.shuffle(order)
        for signed in order:
            [result] = await svc.vote(w.id, [wire.VoteItem(signed)])
            if result.vote is not None:
                # Printed only after vote() returned: the lock is committed.
                print("vote", signed.entry.author.hex(), signed.id.hex(), flush=True)
            else:
                print("refused", result.reason.value, flush=True)
        print("done", flush=True)
        nursery.cancel_scope.cancel()
trio.run(main, sys.argv[1], int(sys.argv[2]))
"""


def conflicting() -> tuple[World, list]:  # type: ignore[type-arg]
    """10 authors, each with 8 different entries for seq 1 (double spends)."""
    w = World()
    entries = []
    for a in range(10):
        author = key(a, "spender")
        for r in range(8):
            entries.append(
                w.entry(author, Transfer(key(r, "shop").public, 1 + r), seq=1, prev=bytes(32))
            )
    return w, entries


def run_voter(path: Path, seed: int, kill_after: int | None) -> list[tuple[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", VOTER, str(path), str(seed)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    votes = []
    for lines, raw in enumerate(proc.stdout, 1):
        line = raw.decode().split()
        if line[0] == "vote":
            votes.append((line[1], line[2]))
        if kill_after is not None and lines >= kill_after:  # 80 answers in all: mid-way
            proc.send_signal(signal.SIGKILL)
            break
        if line[0] == "done":
            break
    proc.wait()
    return votes


def test_a_validator_killed_mid_voting_never_votes_twice_for_a_slot(tmp_path: Path) -> None:
    for attempt in range(3):
        path = tmp_path / f"v{attempt}"
        rnd = random.Random(attempt)
        before = run_voter(path, seed=attempt, kill_after=rnd.randint(3, 60))
        after = run_voter(path, seed=100 + attempt, kill_after=None)
        voted: dict[str, set[str]] = {}
        for author, entry_id in before + after:
            voted.setdefault(author, set()).add(entry_id)
        assert all(len(ids) == 1 for ids in voted.values()), voted
        assert len(voted) == 10  # every author got exactly one entry voted
