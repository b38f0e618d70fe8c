"""Resources and the validator lock rule — what makes double spends impossible
without consensus.

Why this exists: a validator must never vote for two different entries that
consume the same thing. ``resources(entry)`` lists what an entry consumes
exclusively: always its place in the author's chain ``(economy, author,
seq)``, plus whatever its kind adds (a channel it closes, a device it
registers). Before a validator's vote leaves the node it durably records
``resource -> entry_id`` for each; it votes only if every resource is free or
already locked to this very entry (re-voting for the same entry is harmless
and lets a submitter recover lost votes). Two quorums share an honest
validator, so at most one of two conflicting entries is ever certified.

Resource keys are 32-byte ids in the ``resource`` domain over the canonical
array ``[name, economy, *fields]``, so they are fixed-size and never collide
across economies or kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mycelia.protocol import codec
from mycelia.protocol.domains import RESOURCE
from mycelia.protocol.kinds import KINDS
from mycelia.protocol.reasons import Reason, Refused

__all__ = ["lock_decision", "resource_key", "resources"]


def resource_key(name: str, economy: bytes, *fields: Any) -> bytes:
    return RESOURCE.id(codec.encode([name, economy, *fields]))


def resources(entry: Any) -> tuple[bytes, ...]:
    """Every resource ``entry`` consumes; the first is always its chain slot."""
    out = [resource_key("seq", entry.economy, entry.author, entry.seq)]
    for name, *fields in KINDS[entry.kind].resources(entry):
        out.append(resource_key(name, entry.economy, *fields))
    return tuple(out)


def lock_decision(
    lookup: Callable[[bytes], bytes | None] | Mapping[bytes, bytes],
    entry_id: bytes,
    wanted: tuple[bytes, ...],
) -> tuple[bytes, ...]:
    """The lock rule. ``lookup(resource)`` gives the entry id a resource is
    locked to, or None. Returns the resources to newly lock (possibly none,
    when re-voting); raises ``Refused(resource_locked)`` if any is locked to
    another entry — in which case nothing may be locked."""
    get = lookup.get if isinstance(lookup, Mapping) else lookup
    new = []
    for resource in wanted:
        holder = get(resource)
        if holder is None:
            new.append(resource)
        elif holder != entry_id:
            raise Refused(
                Reason.RESOURCE_LOCKED,
                f"resource {resource.hex()[:16]} is locked to entry {holder.hex()}",
            )
    return tuple(new)
