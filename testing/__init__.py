"""Test support shipped with mycelia, as ``trio.testing`` is with trio.

Why this exists: the tests, the benchmarks (``bench/``) and ``mycelia
devnet`` all need the same few things — keys and economies that are the
same at every run, several nodes in one trio process, ``mycelia node run``
processes to start and stop — and each used to import them from ``tests/``
or keep its own copy. They live here once, inside the distribution, so
nothing imports ``tests`` and no copy can drift from another.

* :mod:`mycelia.testing.economies`: deterministic keys (``key(n)``), genesis
  makers, and :class:`~mycelia.testing.economies.World`, an economy with
  an in-memory ledger that builds and certifies each author's next entry.
* :mod:`mycelia.testing.cluster`: several :class:`~mycelia.node.daemon.Node`
  in one trio process over loopback libp2p, and wallets that track their
  own chain.
* :mod:`mycelia.testing.processes`: ``mycelia`` CLI commands and
  ``mycelia node run`` processes (captured log or log file, attached or
  detached).
* :mod:`mycelia.testing.openrpc`: whether a JSON answer is one the node's
  method registry declares (its OpenRPC document's result schemas), which
  keeps the client tests' fake node honest.

Importing the package imports none of its modules, and each module pulls
in only what it needs (:mod:`~mycelia.testing.economies` only
``mycelia.protocol``; the cluster the node). Production code does not
import it, with one exception: ``mycelia devnet`` (``cli/devnet.py``), which
*is* a test network, starts its nodes with the launcher and makes its
economies with the genesis makers found here (``tests/test_imports.py``
holds both to that).
"""
