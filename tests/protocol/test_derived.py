"""The derived rules every layer asks the protocol for (one home each):
the smallest valid quorum, membership and the credit limit in force, the
accounts an entry changes, and an author's next entry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol import (
    Burn,
    CreditSet,
    MemberAdmit,
    Mint,
    Transfer,
    entry_accounts,
    next_entry,
    smallest_quorum,
)
from mycelia.protocol.economy import MEMBERSHIP_APPROVED
from mycelia.protocol.ledger import Position
from mycelia.protocol.reasons import Reason, Refused
from mycelia.testing.economies import World, genesis, key, validator_keys

A, B, STEWARD = key(1), key(2), key(10, "steward")


@given(st.integers(1, 10_000))
def test_smallest_quorum_is_the_least_more_than_two_thirds(total: int) -> None:
    q = smallest_quorum(total)
    assert 3 * q > 2 * total
    assert q <= total
    assert not 3 * (q - 1) > 2 * total


def test_membership_and_limit_in_force() -> None:
    vk = validator_keys(4)
    w = World(
        genesis(
            validators=vk,
            stewards=[STEWARD],
            membership=MEMBERSHIP_APPROVED,
            default_limit=300,
        ),
        vk,
    )
    econ = w.economy
    assert not econ.is_member(A.public, w.ledger.account(A.public))
    assert econ.is_member(STEWARD.public, w.ledger.account(STEWARD.public))
    w.admit(STEWARD, A)
    assert econ.is_member(A.public, w.ledger.account(A.public))
    assert econ.credit_limit(w.ledger.account(A.public)) == 300
    w.set_limit(STEWARD, A, 50)
    assert econ.credit_limit(w.ledger.account(A.public)) == 50


def test_issued_economies_have_no_credit() -> None:
    vk = validator_keys(4)
    issuer = key(11, "issuer")
    w = World(genesis(validators=vk, kind="issued", issuers=[(issuer, 1_000)]), vk)
    assert w.economy.credit_limit(w.ledger.account(A.public)) == 0


def test_entry_accounts_per_kind() -> None:
    w = World()
    cases = {
        Transfer(B.public, 5, ""): (A.public, B.public),
        Mint(B.public, 5, ""): (A.public, B.public),
        Burn(5): (A.public,),
        MemberAdmit(B.public): (A.public, B.public),
        CreditSet(B.public, 5): (A.public, B.public),
    }
    for body, expected in cases.items():
        assert entry_accounts(w.entry(A, body).entry) == expected


def test_next_entry_never_goes_back_in_time() -> None:
    """A wallet whose clock is behind the chain's head still gets an entry
    the ledger accepts (before, ``entry_prepare`` handed out ``ts_regression``)."""
    w = World()
    first = w.transfer(A, B, 5)
    head = w.ledger.account(A.public)
    behind = head.ts_ms - 1_000
    entry = next_entry(w.id, A.public, head, Transfer(B.public, 1, ""), behind)
    assert (entry.seq, entry.prev, entry.ts_ms) == (2, first.entry_id, head.ts_ms)
    assert w.ledger.check(entry.sign(A)).ok
    # A clock ahead is used as is.
    ahead = next_entry(w.id, A.public, head, Transfer(B.public, 1, ""), head.ts_ms + 7)
    assert ahead.ts_ms == head.ts_ms + 7
    # Several in a row, before any is certified: Position.after.
    signed = entry.sign(A)
    third = next_entry(w.id, A.public, Position.after(signed), Burn(1), behind)
    assert (third.seq, third.prev, third.ts_ms) == (3, signed.id, signed.entry.ts_ms)
    # Against the entry built by hand with the wallet's clock: refused.
    stale = type(entry)(w.id, A.public, 2, first.entry_id, behind, Transfer(B.public, 1, ""))
    assert w.ledger.check(stale.sign(A)).reason is Reason.TS_REGRESSION


def test_entry_for_defaults_what_is_not_given() -> None:
    """``entry_prepare``'s rule: each of seq, prev and ts_ms given or
    defaulted; prev of an earlier slot looked up, ``missing`` if unknown."""
    from mycelia.protocol.ledger import entry_for

    w = World()
    first = w.transfer(A, B, 5)
    head = w.ledger.account(A.public)
    body = Transfer(B.public, 1, "")

    def id_at(seq: int) -> bytes | None:
        return w.ledger.chain.get((A.public, seq))

    plain = entry_for(w.id, A.public, head, body, head.ts_ms - 5, id_at=id_at)
    assert plain == next_entry(w.id, A.public, head, body, head.ts_ms - 5)
    # A given ts_ms is kept as is (even one check would refuse).
    given = entry_for(w.id, A.public, head, body, 0, ts_ms=7, id_at=id_at)
    assert (given.seq, given.prev, given.ts_ms) == (2, first.entry_id, 7)
    # An earlier slot: prev looked up; the first slot: the zero id.
    again = entry_for(w.id, A.public, head, body, 99, seq=1, id_at=id_at)
    assert (again.prev, again.ts_ms) == (bytes(32), 99)
    # A slot whose predecessor this node does not hold.
    with pytest.raises(Refused, match="entry 4") as info:
        entry_for(w.id, A.public, head, body, 99, seq=5, id_at=id_at)
    assert info.value.reason is Reason.MISSING
