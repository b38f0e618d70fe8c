"""Audit: a host's stored readings with their Merkle proofs, to anyone who asks.

Why this exists: an attestation in the ledger holds only a Merkle root and
per-device aggregates; the readings stay with their host. Anyone auditing a
device (its owner, a steward, a curious member) needs the readings and, for
each attested one, a proof that it is a leaf under the attested root
(docs/sensors.md, "Audit"). The host answers from its store; any other node
relays the question to the host over ``/mycelia/audit/1`` and the answer back,
unverified — the client checks every reading with the protocol's
``AttestationAudit`` against the certificates, so a node in between need not
be trusted.

How it works: a stored reading knows its attestation and leaf index; the
proof is rebuilt from the batch's readings (``Store.batch``, in batch order)
with the protocol's :class:`~mycelia.protocol.merkle.MerkleTree`. Trees are
kept in a small LRU, since an audit pages through a batch and every page
would otherwise rebuild the same tree. Reading the store and hashing run in
a worker thread. :meth:`Audit.fetch_certificate` finds a certificate this
node lacks by asking its peers over ``/mycelia/sync/1`` (``by-id``) and
verifies it against its economy before handing it out.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import trio

from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.p2p import P2P, P2PError, peer_id_of
from mycelia.node.store import Store
from mycelia.protocol import Certificate, Refused
from mycelia.protocol.merkle import MerkleTree

__all__ = ["Audit"]

log = logging.getLogger("mycelia.audit")

#: Batch trees kept for the proofs of the next page (each holds ~2 hashes a leaf).
TREE_CACHE = 8


class Audit:
    def __init__(self, store: Store, p2p: P2P, applier: Applier) -> None:
        self.store = store
        self.p2p = p2p
        self.applier = applier
        self._trees: OrderedDict[bytes, MerkleTree | None] = OrderedDict()
        self._trees_lock = threading.Lock()  # read() runs in worker threads
        #: audit requests served to peers (a plain counter, for the logs)
        self.served = 0

    # -- answering from the store ---------------------------------------------------

    def _tree(self, attestation: bytes) -> MerkleTree | None:
        with self._trees_lock:
            if attestation in self._trees:
                self._trees.move_to_end(attestation)
                return self._trees[attestation]
        leaves = self.store.batch(attestation)
        tree = None if leaves is None else MerkleTree(leaves)
        with self._trees_lock:
            self._trees[attestation] = tree
            while len(self._trees) > TREE_CACHE:
                self._trees.popitem(last=False)
        return tree

    def read(self, request: wire.AuditRequest) -> tuple[list[wire.AuditItem], int | None]:
        """This node's stored readings for ``request``, each attested one
        with its proof (blocking: call it in a worker thread)."""
        r = request
        rows, next_counter = self.store.readings(r.economy, r.device, r.first, r.last, r.limit)
        items = []
        for _counter, stored in rows:
            if not stored.attested:
                items.append(wire.AuditItem(stored.signed))
                continue
            tree = self._tree(stored.attestation)
            # A batch is pruned whole, so a missing tree means none is left
            # to prove with: say which attestation, without a proof.
            proof = b"" if tree is None else tree.proof(stored.index).encode()
            items.append(wire.AuditItem(stored.signed, stored.attestation, proof))
        return items, next_counter

    async def readings(self, request: wire.AuditRequest) -> tuple[list[wire.AuditItem], int | None]:
        return await trio.to_thread.run_sync(self.read, request)

    async def handle(self, peer_id: str, data: bytes) -> bytes:
        """The ``/mycelia/audit/1`` handler."""
        try:
            request = wire.decode_audit_request(data)
        except Refused as exc:
            return wire.encode_error(exc.reason, exc.detail)
        items, next_counter = await self.readings(request)
        self.served += 1
        return wire.encode_audit_response(items, next_counter)

    # -- asking others ----------------------------------------------------------------

    async def ask(
        self, host: bytes, request: wire.AuditRequest
    ) -> tuple[list[wire.AuditItem], int | None]:
        """Ask the node with key ``host`` (a device's registered host).
        Raises :class:`P2PError` (unreachable) or :class:`Refused` (it
        refused, or answered something malformed)."""
        data = await self.p2p.request(
            peer_id_of(host), wire.AUDIT_PROTOCOL, wire.encode_audit_request(request)
        )
        return wire.decode_audit_response(data, request.limit)

    async def fetch_certificate(self, entry_id: bytes) -> Certificate | None:
        """The certificate ``entry_id`` from a connected peer (sync's
        ``by-id``), verified against its economy; None if no peer has one."""
        request = wire.encode_sync_request("by-id", [entry_id])
        for peer in self.p2p.peers():
            try:
                data = await self.p2p.request(peer, wire.SYNC_PROTOCOL, request)
                certs = wire.decode_cert_response(data)
            except (P2PError, Refused) as exc:
                log.info("by-id from %s failed: %s", peer, exc)
                continue
            for cert in certs:
                economy = self.applier.economies.get(cert.entry.economy)
                if cert.entry_id != entry_id or economy is None:
                    continue
                try:
                    cert.verify(economy)
                except Refused as exc:
                    log.warning("peer %s sent a bad certificate: %s", peer, exc)
                    continue
                return cert
        return None
