"""Property tests of the ledger invariants (DESIGN §4) under random histories.

The model: four validators, each with its own :class:`Ledger` and lock table,
each seeing certificates late and in its own random order (a stale view);
optionally one of them Byzantine (votes for anything). Authors submit random
valid and invalid entries; a submitter collects votes, attaching what a
validator says it needs, and forms certificates at quorum. Then:

* every certificate formed is valid against the full history, except a debit
  that a stale validator accepted under a credit limit it had not yet seen
  lowered (the documented non-monotonic exception);
* after each certificate: mutual-credit balances sum to 0; issued balances
  sum to minted − burned and no issuer passes its cap; the debited author is
  not below the limit it was checked against;
* at the end every validator, having applied all certificates in its own
  random order, holds exactly the submitter's state and chains; so does a
  fresh ledger fed the certificates in any permutation (gaps buffered);
* every chain is gap-free and hash-linked;
* ``entry_accounts`` names exactly the accounts each certificate's effects
  change (what nodes index history under and notify about);
* in an impact economy (sensors: registrations, attestations, claims,
  payments and burns), any permutation of the certificates gives the same
  accounts and records, and each owner's minted credits times the rate plus
  its devices' carried remainders is exactly what it claimed;
* compute channels (opens, closes with good and bad vouchers, refunds with
  and without releases, time passing) in the same random histories: the
  sums above hold with the escrow of unsettled channels counted, each
  channel is settled by at most one certificate (close xor refund, so no
  close with an older voucher after a newer one), which pays out exactly
  its escrow, and certificates applied in any order — a close before its
  open — give the same state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import event, given
from hypothesis import strategies as st

from mycelia.protocol import (
    Burn,
    Certificate,
    ChannelClose,
    ChannelOpen,
    ChannelRefund,
    ClaimCursor,
    CreditSet,
    ImpactClaim,
    Ledger,
    MemberAdmit,
    Mint,
    Reason,
    Refused,
    SignedEntry,
    SigningKey,
    Transfer,
    Vote,
    Voucher,
    assemble,
    channel_state,
    entry_accounts,
    transition,
)
from mycelia.protocol.channels import Release, ReleaseTerms
from mycelia.protocol.locks import lock_decision, resources
from mycelia.protocol.sensors import DeviceKey
from mycelia.protocol.state import ZERO_ID, own_key
from mycelia.testing.economies import (
    World,
    device_key,
    genesis,
    impact_genesis,
    key,
    validator_keys,
)

ACCOUNTS = [key(i) for i in range(6)]
STEWARD = key(10, "steward")
ISSUERS = [(key(11, "issuer"), 5_000), (key(12, "issuer"), 3_000)]
PEOPLE = [*ACCOUNTS, STEWARD, *(k for k, _ in ISSUERS)]
BY_PUBLIC = {k.public: k for k in PEOPLE}
#: "mutual_channels": an open mutual-credit economy whose history is mostly
#: compute channels (every economy's history has some).
ECONOMIES = ("mutual_open", "mutual_approved", "issued", "mutual_channels")


def make_world(economy: str) -> World:
    vk = validator_keys(4)
    if economy in ("mutual_open", "mutual_channels"):
        g = genesis(validators=vk, default_limit=500, stewards=[STEWARD])
    elif economy == "mutual_approved":
        g = genesis(validators=vk, membership="approved", stewards=[STEWARD], default_limit=500)
    else:
        g = genesis(kind="issued", validators=vk, issuers=ISSUERS, stewards=[STEWARD])
    return World(g, vk)


@dataclass
class Validator:
    key: SigningKey
    ledger: Ledger
    byzantine: bool = False
    locks: dict[bytes, bytes] = field(default_factory=dict)
    inbox: list[Certificate] = field(default_factory=list)

    def catch_up(self, rnd: random.Random, fraction: float) -> None:
        """Apply a random part of what this validator has not seen, in random order."""
        rnd.shuffle(self.inbox)
        cut = int(len(self.inbox) * fraction)
        now, self.inbox = self.inbox[:cut], self.inbox[cut:]
        for cert in now:
            self.ledger.apply(cert)

    def vote(self, signed: SignedEntry, rnd: random.Random) -> Vote | None:
        economy = self.ledger.economy
        if self.byzantine:
            return Vote.make(self.key, economy.id, economy.epoch, signed.id)
        verdict = self.ledger.check(signed)
        if verdict.needs:
            # The submitter attaches what is needed; here: everything it has.
            self.catch_up(rnd, 1.0)
            verdict = self.ledger.check(signed)
        if not verdict.ok:
            return None
        try:
            new = lock_decision(self.locks, signed.id, resources(signed.entry))
        except Refused as exc:
            assert exc.reason is Reason.RESOURCE_LOCKED
            return None
        for resource in new:
            self.locks[resource] = signed.id
        return Vote.make(self.key, economy.id, economy.epoch, signed.id)


people = st.integers(0, len(PEOPLE) - 1)
amounts = st.one_of(st.integers(1, 300), st.integers(1, 6_000))
#: Per economy, the entry kinds drawn, mostly the ones the economy allows and
#: a few it refuses (so refusals under staleness are exercised too).
#: Compute channels in every economy: opens, closes, refunds, and time passing.
CHANNEL_OPS = ["open"] * 2 + ["close"] * 2 + ["refund"] * 2 + ["wait"]
KIND_MIX = {
    "mutual_open": ["transfer"] * 8 + ["credit"] * 2 + ["mint", "burn", "admit"] + CHANNEL_OPS,
    "mutual_approved": ["transfer"] * 8 + ["credit"] * 2 + ["admit"] * 2 + ["mint"] + CHANNEL_OPS,
    "issued": ["transfer"] * 7 + ["mint"] * 3 + ["burn"] * 2 + ["credit"] + CHANNEL_OPS,
    "mutual_channels": ["transfer"] * 3 + ["credit"] + CHANNEL_OPS * 3,
}


def ops(economy: str) -> st.SearchStrategy[tuple[str, int, int, int]]:
    return st.tuples(st.sampled_from(KIND_MIX[economy]), people, people, amounts)


def author_of(op: tuple[str, int, int, int]) -> SigningKey:
    """Stewards do most admin, issuers most minting; anyone may try."""
    name, a, _b, _n = op
    if name in ("admit", "credit") and a % 4:
        return STEWARD
    if name == "mint" and a % 4:
        return ISSUERS[a % 2][0]
    return PEOPLE[a]


def body_for(op: tuple[str, int, int, int]) -> object:
    name, a, b, n = op
    to = PEOPLE[b].public
    if name == "transfer":
        # Offset so that small generated integers do not collapse into
        # self-transfers (those are refused; a few cases are enough).
        return Transfer(PEOPLE[(a + b + 1) % len(PEOPLE)].public if b else to, n)
    if name == "mint":
        return Mint(to, n)
    if name == "burn":
        return Burn(n)
    if name == "admit":
        return MemberAdmit(to)
    return CreditSet(to, n % 900)


def channel_entry(
    world: World, op: tuple[str, int, int, int], channels: list[bytes]
) -> tuple[SigningKey, object, int | None] | None:
    """``(author, body, ts_ms)`` of a channel op (None: nothing to submit).
    Mostly the right party with a good voucher or release; sometimes another
    author, a voucher over the escrow, a signature by the wrong key, a refund
    before expiry, or a second settlement of a channel already settled."""
    name, a, b, n = op
    if name == "wait":
        world.clock += 50_000 * (1 + n % 8)
        return None
    if name == "open":
        provider = PEOPLE[b] if b != a or n % 5 == 0 else PEOPLE[(a + 1) % len(PEOPLE)]
        amount = n if n % 7 == 0 else 1 + n % 300  # mostly affordable
        return PEOPLE[a], ChannelOpen(provider.public, amount, world.clock + 1 + 100 * n), None
    if not channels:
        return None
    channel = channels[b % len(channels)]
    state = channel_state(world.ledger.state, channel)
    assert state is not None
    consumer, provider = BY_PUBLIC[state.consumer], BY_PUBLIC[state.provider]
    if name == "close":
        author = provider if a % 4 else PEOPLE[a]
        signer = consumer if a % 5 else provider
        cumulative = 1 + n % (state.amount + state.amount // 8 + 1)
        voucher = Voucher(world.id, channel, cumulative).sign(signer)
        return (
            author,
            ChannelClose(channel, cumulative, voucher.signature, state.consumer, state.amount),
            None,
        )
    author = consumer if a % 4 else PEOPLE[a]
    terms = None
    if n % 2:
        final = n % (state.amount + 20)
        signer = consumer if a % 7 == 0 else provider
        terms = ReleaseTerms(final, Release(world.id, channel, final).sign(signer).signature)
    return author, ChannelRefund(channel, terms, state.provider, state.amount), None


def escrow_held(world: World) -> int:
    """What unsettled channels hold (money in no account)."""
    total = 0
    for record in list(world.ledger.state.records):
        if record.startswith(b"fact/channel/"):
            state = channel_state(world.ledger.state, record[len(b"fact/channel/") :])
            assert state is not None
            total += state.escrow
    return total


def limit_of(world: World, k: bytes) -> int:
    acct = world.ledger.account(k)
    if world.economy.kind != "mutual_credit":
        return 0
    return acct.limit(world.economy.default_limit)


def check_sums(world: World) -> None:
    accounts = world.ledger.state.accounts
    total = sum(a.balance for a in accounts.values()) + escrow_held(world)
    if world.economy.kind == "mutual_credit":
        assert total == 0
    else:
        minted = sum(a.minted for a in accounts.values())
        burned = sum(a.burned for a in accounts.values())
        assert total == minted - burned
        for issuer, cap in world.economy.issuers.items():
            assert world.ledger.account(issuer).minted <= cap


def check_chains(certs: list[Certificate]) -> None:
    by_author: dict[bytes, list[Certificate]] = {}
    for c in certs:
        by_author.setdefault(c.entry.author, []).append(c)
    for chain in by_author.values():
        chain.sort(key=lambda c: c.entry.seq)
        prev = ZERO_ID
        for n, c in enumerate(chain, 1):
            assert c.entry.seq == n
            assert c.entry.prev == prev
            prev = c.entry_id


@given(
    data=st.data(),
    economy=st.sampled_from(ECONOMIES),
    byzantine=st.integers(-1, 3),
    admitted=st.sets(st.integers(0, len(ACCOUNTS) - 1)),
    funding=st.lists(st.tuples(st.integers(0, 1), people, st.integers(1, 1_500)), max_size=6),
    stale=st.floats(0.0, 1.0),
    rnd=st.randoms(use_true_random=False),
)
def test_random_histories_keep_every_invariant(
    data: st.DataObject,
    economy: str,
    byzantine: int,
    admitted: set[int],
    funding: list[tuple[int, int, int]],
    stale: float,
    rnd: random.Random,
) -> None:
    history = data.draw(st.lists(ops(economy), min_size=8, max_size=30), label="history")
    world = make_world(economy)
    validators = [
        Validator(k, Ledger(world.economy), byzantine=(i == byzantine))
        for i, k in enumerate(world.vkeys)
    ]
    if economy == "mutual_approved":
        history = [("admit", PEOPLE.index(STEWARD), i, 0) for i in sorted(admitted)] + history
    if economy == "issued":
        issuer_at = [PEOPLE.index(k) for k, _ in ISSUERS]
        history = [("mint", issuer_at[i], to, n) for i, to, n in funding] + history
    certs: list[Certificate] = []
    lowered: set[bytes] = set()
    channels: list[bytes] = []
    settled: dict[bytes, bytes] = {}

    for op in history:
        try:
            if op[0] in CHANNEL_OPS:
                made = channel_entry(world, op, channels)
                if made is None:
                    continue
                author, body, ts_ms = made
            else:
                author, body, ts_ms = author_of(op), body_for(op), None
            signed = world.entry(author, body, ts_ms=ts_ms)
        except Refused as exc:  # e.g. a body that no wallet could build
            assert exc.reason in (Reason.MALFORMED_BODY, Reason.AMOUNT_OUT_OF_RANGE)
            continue
        truth = world.ledger.check(signed)
        if op[0] in CHANNEL_OPS:
            event(f"{signed.entry.kind}: {truth.reason or 'valid'}")
        limit_before = limit_of(world, author.public)
        order = list(validators)
        rnd.shuffle(order)
        votes = []
        for v in order:
            v.catch_up(rnd, stale)
            vote = v.vote(signed, rnd)
            if vote is not None:
                votes.append(vote)
        try:
            cert = assemble(world.economy, signed, votes)
        except Refused as exc:
            assert exc.reason is Reason.QUORUM_NOT_REACHED
            continue
        if not truth.ok:
            # Only a limit lowered out of a stale validator's sight may let a
            # debit through that the full history would refuse.
            assert truth.reason is Reason.INSUFFICIENT_BALANCE, truth
            assert author.public in lowered
        changed = transition(world.economy, world.ledger.state, cert.entry, cert.entry_id)
        assert set(changed.accounts) == set(entry_accounts(cert.entry))
        assert entry_accounts(cert.entry)[0] == cert.entry.author
        assert world.ledger.apply(cert) == [cert.entry_id]
        certs.append(cert)
        for v in validators:
            v.inbox.append(cert)
        body = cert.entry.body
        if isinstance(body, CreditSet):
            lowered.add(body.member)  # conservatively: any steward setting
        if isinstance(body, ChannelOpen):
            channels.append(cert.entry_id)
        if isinstance(body, ChannelClose | ChannelRefund):
            # close xor refund, once: the channel lock, whatever the staleness
            assert body.channel not in settled, "a channel settled twice"
            settled[body.channel] = cert.entry_id
            state = channel_state(world.ledger.state, body.channel)
            assert state is not None
            assert state.settlement is not None
            assert state.settlement.entry == cert.entry_id
            assert state.settlement.to_provider + state.settlement.to_consumer == state.amount
        check_sums(world)
        if isinstance(body, Transfer | Burn | ChannelOpen) and truth.ok:
            assert world.ledger.account(author.public).balance >= -limit_before

    # No balance below its limit, unless that limit was lowered by a steward.
    for k, acct in world.ledger.state.accounts.items():
        if k not in lowered:
            assert acct.balance >= -limit_of(world, k)

    event(f"certs {min(len(certs) // 5 * 5, 30)}+ {economy} byz={byzantine >= 0}")
    event(f"channels settled {min(len(settled), 3)}{'+' if len(settled) >= 3 else ''}")
    check_chains(certs)
    expected = world.ledger.state.snapshot()
    for v in validators:
        v.catch_up(rnd, 1.0)
        assert v.ledger.pending_count == 0
        assert v.ledger.state.snapshot() == expected
        assert v.ledger.chain == world.ledger.chain

    for _ in range(2):
        shuffled = list(certs)
        rnd.shuffle(shuffled)
        fresh = Ledger(world.economy)
        for c in shuffled:
            fresh.apply(c, verified=True)
        assert fresh.pending_count == 0
        assert fresh.state.snapshot() == expected


@given(rnd=st.randoms(use_true_random=False), n=st.integers(2, 25))
def test_any_permutation_of_certificates_gives_the_same_state(rnd: random.Random, n: int) -> None:
    """Many authors paying each other and stewards setting one member's limit
    concurrently (the last-writer-wins register): order never matters."""
    vk = validator_keys(4)
    second = key(13, "steward")
    world = World(genesis(validators=vk, stewards=[STEWARD, second], default_limit=300), vk)
    certs = []

    def submit(author: SigningKey, body: object) -> None:
        signed = world.entry(author, body)
        if world.ledger.check(signed).ok:  # a lowered limit may refuse a debit
            certs.append(world.certify(signed))
            world.ledger.apply(certs[-1])

    for i in range(n):
        a, b = rnd.sample(ACCOUNTS, 2)
        submit(a, Transfer(b.public, rnd.randint(1, 50)))
        if i % 5 == 0:
            submit(rnd.choice([STEWARD, second]), CreditSet(a.public, rnd.randint(0, 400)))
    assert certs
    expected = world.ledger.state.snapshot()
    for _ in range(3):
        rnd.shuffle(certs)
        fresh = Ledger(world.economy)
        for c in certs:
            fresh.apply(c, verified=True)
        assert fresh.state.snapshot() == expected


SENSOR_OWNERS = [key(30, "owner"), key(31, "owner")]
SENSOR_HOSTS = [key(32, "host"), key(33, "host")]


@dataclass
class _Device:
    key: DeviceKey
    owner: SigningKey
    host: SigningKey
    next_counter: int = 1
    attested: list[Certificate] = field(default_factory=list)
    claimed: int = 0
    total: int = 0


@given(rnd=st.randoms(use_true_random=False), steps=st.integers(3, 20))
def test_any_permutation_of_sensor_certificates_gives_the_same_state(
    rnd: random.Random, steps: int
) -> None:
    """Owners register devices of both key types on two hosts, hosts attest
    batches (with lost counters), owners claim, pay and burn: certificates
    applied in any order across authors give the same accounts and records,
    and credits are exactly what was claimed (minted × rate + carry)."""
    vk = validator_keys(4)
    rate = rnd.choice([1, 7, 1_000])
    world = World(impact_genesis(validators=vk, units_per_credit=rate), vk)
    certs: list[Certificate] = []

    def commit(author: SigningKey, body: object) -> Certificate:
        signed = world.entry(author, body)
        changed = transition(world.economy, world.ledger.state, signed.entry, signed.id)
        assert set(changed.accounts) == set(entry_accounts(signed.entry))
        world.clock -= 1  # commit() below builds the same entry again
        certs.append(world.commit(author, body))
        assert certs[-1].entry_id == signed.id
        return certs[-1]

    devices = []
    for i in range(rnd.randint(2, 4)):
        d = _Device(
            device_key(40 + i, rnd.choice(["ed25519", "p256"])),
            rnd.choice(SENSOR_OWNERS),
            rnd.choice(SENSOR_HOSTS),
        )
        commit(d.owner, world.registration_body(d.owner, d.key, d.host))
        devices.append(d)
    for _ in range(steps):
        action = rnd.random()
        if action < 0.5:
            host = rnd.choice(SENSOR_HOSTS)
            mine = [d for d in devices if d.host is host]
            if not mine:
                continue
            chosen = rnd.sample(mine, rnd.randint(1, len(mine)))
            batch = []
            for d in chosen:
                counters = sorted(rnd.sample(range(d.next_counter, d.next_counter + 8), 3))
                d.next_counter = counters[-1] + 1
                values = [rnd.randint(0, 5_000) for _ in counters]
                batch += world.readings(d.key, counters, values)
            cert = commit(host, world.attest_body(batch)[0])
            for d in chosen:
                d.attested.append(cert)
        elif action < 0.8:
            d = rnd.choice(devices)
            unclaimed = d.attested[d.claimed :]
            if not unclaimed:
                continue
            k = rnd.randint(1, len(unclaimed))
            claim = world.claim_body(d.key, unclaimed[:k])
            commit(d.owner, claim)
            d.claimed += k
            d.total += claim.total
        else:
            owner = rnd.choice(SENSOR_OWNERS)
            balance = world.balance(owner)
            if balance == 0:
                continue
            amount = rnd.randint(1, balance)
            other = SENSOR_OWNERS[1 - SENSOR_OWNERS.index(owner)]
            commit(owner, Burn(amount) if rnd.random() < 0.3 else Transfer(other.public, amount))

    claims = sum(isinstance(c.entry.body, ImpactClaim) for c in certs)
    event(f"claims {min(claims, 4)}{'+' if claims >= 4 else ''}, rate {rate}")
    check_sums(world)
    for owner in SENSOR_OWNERS:
        carries = 0
        for d in devices:
            if d.owner is owner and d.claimed:
                raw = world.ledger.state.get_record(own_key(owner.public, "claimed", d.key.device))
                assert raw is not None
                carries += ClaimCursor.decode(raw).carry
        owned = sum(d.total for d in devices if d.owner is owner)
        assert world.ledger.account(owner.public).minted * rate + carries == owned
    check_chains(certs)
    expected = world.ledger.state.snapshot()
    for _ in range(3):
        rnd.shuffle(certs)
        fresh = Ledger(world.economy)
        for c in certs:
            fresh.apply(c, verified=True)
        assert fresh.pending_count == 0
        assert fresh.state.snapshot() == expected
        assert fresh.chain == world.ledger.chain
