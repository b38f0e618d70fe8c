"""Forks in ``mycelia status`` and the client's ``economy_forks``: shown per
economy with the validators that signed both certificates, and verified
from the evidence alone — a node that lies about a fork is caught."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mycelia.api.encoding import hex_out
from mycelia.client import Client, Endpoint
from mycelia.protocol import Certificate, ForkEvidence, Transfer
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.economies import World, genesis, key, validator_keys
from tests.cli.conftest import ok, one_line_error, run
from tests.cli.fakenode import FakeNode, serve

A, B, C = key(1), key(2), key(3)


def forked_world() -> tuple[World, ForkEvidence]:
    vkeys = validator_keys(4)
    w = World(genesis(validators=vkeys), vkeys)
    x = w.certify(w.entry(A, Transfer(B.public, 5), seq=1, prev=ZERO_ID), [0, 2, 3])
    y = w.certify(w.entry(A, Transfer(C.public, 5), seq=1, prev=ZERO_ID), [1, 2, 3])
    return w, ForkEvidence.of(x, y)


@pytest.fixture
def forked(home: Path) -> Iterator[tuple[FakeNode, World, ForkEvidence]]:
    w, evidence = forked_world()
    fake = FakeNode(w)
    fake.forks[w.id].append(evidence)
    with serve(fake, home / "node"):
        yield fake, w, evidence


def test_status_shows_each_fork_and_who_signed_both(
    forked: tuple[FakeNode, World, ForkEvidence],
) -> None:
    fake, w, evidence = forked
    guilty = [w.vkeys[2].did, w.vkeys[3].did]
    text = ok("status").stdout
    assert "FORKS in Test Valley Hours" in text
    for item in [A.did, *guilty, *(hex_out(i) for i in evidence.entry_ids)]:
        assert item in text
    assert w.vkeys[0].did not in text.split("FORKS")[1]  # signed one only: not named
    assert "economy_forks" in fake.methods()
    doc = json.loads(ok("status", "--json").stdout)
    assert doc["economies"][0]["forks"] == 1
    [fork] = doc["forks"][hex_out(w.id)]
    assert (fork["author"], fork["seq"], fork["guilty"]) == (A.did, 1, guilty)
    assert ForkEvidence.decode(bytes.fromhex(fork["evidence"][2:])) == evidence


def _lie(fake: FakeNode, change: Any) -> None:
    def lying(params: dict[str, Any]) -> Any:
        answer = fake.answer("economy_forks", params)
        change(answer["forks"][0])
        return answer

    fake.lie["economy_forks"] = lying


def _forged(cert: Certificate) -> Certificate:
    sig = bytearray(cert.signatures[0])
    sig[3] ^= 1
    return replace(cert, signatures=(bytes(sig), *cert.signatures[1:]))


def test_a_node_that_lies_about_who_is_guilty_is_caught(
    forked: tuple[FakeNode, World, ForkEvidence],
) -> None:
    fake, w, _ = forked
    _lie(fake, lambda f: f.update(guilty=[w.vkeys[0].did]))  # blames an honest validator
    line = one_line_error(run("status"), "verification_failed")
    assert "disagrees with its evidence (malformed)" in line


def test_forged_evidence_is_caught(forked: tuple[FakeNode, World, ForkEvidence]) -> None:
    fake, w, evidence = forked
    bad = ForkEvidence.of(evidence.first, _forged(evidence.second))
    fake.forks[w.id] = [bad]
    line = one_line_error(run("status"), "verification_failed")
    assert "does not prove a fork" in line
    assert line.endswith("(bad_signature)")


def test_the_client_returns_verified_forks(
    forked: tuple[FakeNode, World, ForkEvidence], home: Path
) -> None:
    _, w, evidence = forked
    with Client(Endpoint.from_datadir(home / "node")) as client:
        [fork] = client.economy_forks(w.id)
    assert fork.evidence == evidence
    assert fork.seq == 1
    assert fork.author == A.did
    assert fork.guilty == (w.vkeys[2].did, w.vkeys[3].did)
