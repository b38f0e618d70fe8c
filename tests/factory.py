"""Deterministic economies, keys, entries and certificates for tests and
benchmarks.

Keys come from fixed seeds (``key(n)``) so failures reproduce. A
:class:`World` holds one economy with its validator keys and an in-memory
ledger, and builds each author's next entry from the ledger's view of that
author's chain (seq, prev), so tests read as the story they tell.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

from mycelia.protocol import (
    Burn,
    Certificate,
    CreditSet,
    Economy,
    Entry,
    Genesis,
    Ledger,
    MemberAdmit,
    Mint,
    SignedEntry,
    SignedGenesis,
    SigningKey,
    Transfer,
    Validator,
    Vote,
    assemble,
)
from mycelia.protocol.economy import IssuedPolicy, MutualCreditPolicy

T0 = 1_700_000_000_000


def key(n: int, label: str = "account") -> SigningKey:
    return SigningKey(blake2b(f"{label}/{n}".encode(), digest_size=32).digest())


def validator_keys(n: int) -> list[SigningKey]:
    return [key(i, "validator") for i in range(n)]


def genesis(
    *,
    kind: str = "mutual_credit",
    membership: str = "open",
    validators: Iterable[SigningKey] | None = None,
    weights: Iterable[int] | None = None,
    quorum: int | None = None,
    stewards: Iterable[SigningKey] = (),
    issuers: Iterable[tuple[SigningKey, int]] = (),
    default_limit: int = 1_000,
    name: str = "Test Valley Hours",
    symbol: str = "TVH",
    nonce: bytes = b"",
) -> Genesis:
    vkeys = list(validators) if validators is not None else validator_keys(4)
    w = list(weights) if weights is not None else [1] * len(vkeys)
    total = sum(w)
    q = quorum if quorum is not None else total * 2 // 3 + 1
    steward_keys = tuple(s.public for s in stewards)
    if kind == "mutual_credit":
        policy = MutualCreditPolicy(membership, steward_keys, default_limit)
    else:
        policy = IssuedPolicy(membership, steward_keys, tuple((k.public, c) for k, c in issuers))
    return Genesis(
        name=name,
        symbol=symbol,
        decimals=2,
        kind=kind,
        policy=policy,
        validators=tuple(Validator(v.public, x) for v, x in zip(vkeys, w, strict=True)),
        quorum=q,
        ts_ms=T0,
        nonce=nonce,
    )


def sign_genesis(g: Genesis, signers: Iterable[SigningKey]) -> SignedGenesis:
    return SignedGenesis.assemble(g, {k.public: g.sign(k) for k in signers})


class World:
    """One economy, its validators, and an in-memory ledger of what is certified."""

    def __init__(self, g: Genesis | None = None, vkeys: list[SigningKey] | None = None) -> None:
        self.vkeys = vkeys if vkeys is not None else validator_keys(4)
        self.genesis = g if g is not None else genesis(validators=self.vkeys)
        self.economy = Economy.from_signed(sign_genesis(self.genesis, self.vkeys))
        self.ledger = Ledger(self.economy)
        self.clock = T0

    @property
    def id(self) -> bytes:
        return self.economy.id

    def entry(
        self,
        author: SigningKey,
        body: object,
        *,
        seq: int | None = None,
        prev: bytes | None = None,
        ts_ms: int | None = None,
        economy: bytes | None = None,
    ) -> SignedEntry:
        """``author``'s next entry (per the ledger), signed; override any field."""
        acct = self.ledger.account(author.public)
        self.clock += 1
        e = Entry(
            economy=self.id if economy is None else economy,
            author=author.public,
            seq=acct.seq + 1 if seq is None else seq,
            prev=acct.head if prev is None else prev,
            ts_ms=self.clock if ts_ms is None else ts_ms,
            body=body,
        )
        return e.sign(author)

    def certify(self, signed: SignedEntry, signers: Iterable[int] | None = None) -> Certificate:
        """Votes from validators ``signers`` (default: the first quorum)."""
        idx = list(signers) if signers is not None else list(range(self.quorum_size()))
        votes = [Vote.make(self.vkeys[i], self.id, self.economy.epoch, signed.id) for i in idx]
        return assemble(self.economy, signed, votes)

    def quorum_size(self) -> int:
        """How many of the first validators it takes to reach quorum."""
        total = 0
        for n, w in enumerate(self.economy.weights, 1):
            total += w
            if total >= self.economy.quorum:
                return n
        raise AssertionError("unreachable quorum")

    def commit(self, author: SigningKey, body: object) -> Certificate:
        """Check, certify and apply ``author``'s next entry; fail loudly if refused."""
        signed = self.entry(author, body)
        verdict = self.ledger.check(signed)
        assert verdict.ok, verdict
        cert = self.certify(signed)
        self.ledger.apply(cert)
        return cert

    def transfer(self, a: SigningKey, b: SigningKey, amount: int, memo: str = "") -> Certificate:
        return self.commit(a, Transfer(b.public, amount, memo))

    def mint(self, issuer: SigningKey, to: SigningKey, amount: int) -> Certificate:
        return self.commit(issuer, Mint(to.public, amount, ""))

    def burn(self, a: SigningKey, amount: int) -> Certificate:
        return self.commit(a, Burn(amount))

    def admit(self, steward: SigningKey, member: SigningKey) -> Certificate:
        return self.commit(steward, MemberAdmit(member.public))

    def set_limit(self, steward: SigningKey, member: SigningKey, limit: int) -> Certificate:
        return self.commit(steward, CreditSet(member.public, limit))

    def balance(self, k: SigningKey) -> int:
        return self.ledger.account(k.public).balance
