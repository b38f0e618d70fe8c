"""JSON views of protocol values the RPC answers with: entries, certificates,
forks, accounts, economies and claimable attestations (scalars and bodies:
``mycelia.api``)."""

from __future__ import annotations

from typing import Any

from mycelia.api.bodies import body_out
from mycelia.api.encoding import amount_out, did_out, hex_out
from mycelia.protocol import (
    Account,
    Certificate,
    Economy,
    Entry,
    ForkEvidence,
    SignedGenesis,
)
from mycelia.protocol.economy import ImpactPolicy, IssuedPolicy, MutualCreditPolicy
from mycelia.protocol.impact import Claimable


def entry_view(entry: Entry, entry_id: bytes | None = None) -> dict[str, Any]:
    return {
        "id": hex_out(entry.id if entry_id is None else entry_id),
        "economy": hex_out(entry.economy),
        "author": did_out(entry.author),
        "seq": entry.seq,
        "prev": hex_out(entry.prev),
        "ts_ms": entry.ts_ms,
        "kind": entry.kind,
        "body": body_out(entry.body),
    }


def certificate_view(cert: Certificate, data: bytes | None = None) -> dict[str, Any]:
    """The entry view plus the certificate's bytes (verifiable offline)."""
    view = entry_view(cert.entry, cert.entry_id)
    view["certificate"] = hex_out(cert.encode() if data is None else data)
    return view


def fork_view(economy: Economy, evidence: ForkEvidence) -> dict[str, Any]:
    """A fork: its slot, both entries (in the evidence's order), the
    validators that signed both, and the evidence's bytes — which prove all
    of it offline (``protocol/forks.py``), so a client need trust none of
    the rest."""
    return {
        "economy": hex_out(evidence.economy),
        "author": did_out(evidence.author),
        "seq": evidence.seq,
        "entries": [entry_view(c.entry, c.entry_id) for c in (evidence.first, evidence.second)],
        "guilty": [did_out(k) for k in evidence.guilty(economy)],
        "evidence": hex_out(evidence.encode()),
    }


# -- accounts and economies -------------------------------------------------------------


def claimable_view(c: Claimable) -> dict[str, Any]:
    """The ``sensor_claimable`` result."""
    return {
        "cursor": c.cursor.last,
        "carry": amount_out(c.cursor.carry),
        "attestations": [
            {
                "id": hex_out(r.attestation),
                "first": r.first,
                "last": r.last,
                "count": r.count,
                "total": amount_out(r.total),
            }
            for r in c.rows
        ],
    }


def account_view(economy: Economy, public: bytes, acct: Account) -> dict[str, Any]:
    mutual = isinstance(economy.genesis.policy, MutualCreditPolicy)
    return {
        "account": did_out(public),
        "balance": amount_out(acct.balance),
        "limit": amount_out(economy.credit_limit(acct)) if mutual else None,
        "seq": acct.seq,
        "head": hex_out(acct.head),
        "ts_ms": acct.ts_ms,
        "member": economy.is_member(public, acct),
        "minted": amount_out(acct.minted),
        "burned": amount_out(acct.burned),
    }


def economy_view(signed: SignedGenesis) -> dict[str, Any]:
    g = signed.genesis
    policy = g.policy
    return {
        "id": hex_out(g.id),
        "name": g.name,
        "symbol": g.symbol,
        "decimals": g.decimals,
        "kind": g.kind,
        "membership": policy.membership,
        "stewards": [did_out(k) for k in policy.stewards],
        "default_limit": (
            amount_out(policy.default_limit) if isinstance(policy, MutualCreditPolicy) else None
        ),
        "issuers": (
            [{"account": did_out(k), "cap": amount_out(c)} for k, c in policy.issuers]
            if isinstance(policy, IssuedPolicy)
            else []
        ),
        "impact": (
            {
                "metric": policy.metric,
                "exponent": policy.exponent,
                "units_per_credit": amount_out(policy.units_per_credit),
                "device_kinds": list(policy.device_kinds),
            }
            if isinstance(policy, ImpactPolicy)
            else None
        ),
        "validators": [{"did": did_out(v.key), "weight": v.weight} for v in g.validators],
        "quorum": g.quorum,
        "ts_ms": g.ts_ms,
        "nonce": hex_out(g.nonce),
        "genesis": hex_out(signed.encode()),
    }
