"""The node's only door to libp2p: gossip topics and one-shot stream requests.

Why this module exists
----------------------
py-libp2p is large, young and moves quickly; its defaults lose messages
(``../shared/notes/py-libp2p.md``) and a few of its behaviours are plainly
bugs. So exactly one module imports it, and the rest of the node sees a small
trio-native interface instead: :class:`P2P` with ``run``, ``subscribe`` /
``publish`` for gossip, ``set_handler`` / ``request`` for request-response
streams, and peer bookkeeping (``connect``, ``peers``, ``on_connect``). Every
libp2p quirk we found is fenced in here, listed below, and pinned by a test in
``tests/node/test_p2p.py``.

How it works
------------
``P2P.run`` builds a host from the node's Ed25519 seed (so the peer id is a
pure function of the node key), listens, starts ``Pubsub`` and ``GossipSub``
as trio services, registers the stream handlers, and then runs its own tasks
in one nursery that it owns: one reader per subscribed topic, one dialer per
bootstrap address, one keepalive per connection (a ping every
``ping_interval_s``; silence for ``ping_timeout_s`` closes the connection,
and one we dialled is redialled), the mDNS dialer, the peerstore sweeper
and the ``on_connect`` callbacks. ``task_status.started()`` is called once
the host listens and pubsub is ready. Cancelling ``run`` becomes an orderly
stop in the reverse order (our tasks, gossipsub, pubsub, then connections
and listeners closed, host) and ``run`` returns without an exception; the
stop takes milliseconds and is bounded at a few seconds.

Dialling: bootstrap peers, redials and requests to unconnected peers share
one backoff per peer (1 s doubling to ``redial_max_backoff_s``); a request
to a peer in backoff fails at once with :class:`PeerUnavailable`, without
dialling. A down peer is logged once at WARNING ("unreachable") and once at
INFO when it is back; libp2p's own lines about routine dial failures are
DEBUG (bugs 22, 23). ``announce`` replaces the advertised addresses (a port
forward, a proxy).

Gossip settings (each from the notes, with the reason):

- ``spam_protection_enabled=False``: the default 10 msg/s per peer and topic
  delivered 187 of 1000 messages at 50 msg/s and also caps our own publishes.
- heartbeat ``heartbeat_interval_s``, 1 s by default (py-libp2p's default is
  120 s): mesh maintenance and IHAVE gossip at go-libp2p's pace; with 120 s
  a fresh mesh takes minutes to repair. It stays what is configured (bug 17).
- protocols ``/meshsub/1.2.0``, ``1.1.0``, ``1.0.0`` only: what go and rust
  speak. py-libp2p would also offer 1.3/1.4/2.0, which nobody else does.
- ``strict_signing=True``: every message is signed by its publisher, so the
  origin peer id handed to a :data:`Receiver` is authenticated; unsigned
  messages do not interoperate with py-libp2p 0.8.1 anyway.
- content-addressed message id, ``BLAKE2b-256(data)``: the same on every
  implementation configured with it (py and js default ids differ, which
  breaks IHAVE gossip across implementations), and it makes identical
  payloads one message: within the seen-cache TTL (120 s) libp2p drops a
  second copy of the same bytes even from another origin (the receiver sees
  the origin whose copy arrived first), and :meth:`P2P.publish` does not
  even send data already in the seen cache.
- yamux muxer, TCP transport, Noise security (libp2p's defaults otherwise).

Pacing and batching: libp2p's outbound RPC queue per peer and the
subscription channel per topic each hold 32 messages and silently drop when
full, and a relaying host spends 3.5-5 ms of CPU per gossip message whatever
its size. So callers batch (many certificates per message, flushed on size or
after a few tens of milliseconds) and call :meth:`P2P.publish` at most a few
hundred times per second in total; this module deliberately adds no queue of
its own. For the same reason a :data:`Receiver` must be quick (hand the data
to a bounded channel, do the work elsewhere): while it runs, the topic's
32-slot channel fills.

A gossip :data:`Validator` must be a function of the data alone (e.g.
signatures), not of local state that may change: py-libp2p caches each
verdict by message id for 300 s, so a message rejected once stays rejected.
It must also answer within 5 s (py-libp2p's validation timeout; slower means
rejected), and at most 10 validations run at once per host, so put CPU work
in a worker thread (``trio.to_thread``). Validators also run on our own
publishes; a rejection there raises :class:`PublishRejected`.

Stream protocols: one request frame in, one response frame out, then both
sides close. A frame is an unsigned LEB128 varint length followed by that
many bytes (:func:`frame`, :func:`read_frame`). The reader refuses a length
over the limit before reading the body (the server resets the stream, logs
one line and keeps serving), refuses varints longer than 10 bytes or not
minimally encoded, and reports a body cut short as :class:`MalformedFrame`.
An empty frame is an ordinary empty payload, never an end marker (reading
after the remote closed raises, see the notes).

py-libp2p 0.8.1 bugs and quirks found here (each workaround has a test)
----------------------------------------------------------------------
1. Duplicate delivery under concurrency. ``Pubsub.push_msg`` checks the seen
   cache, then awaits the (async) topic validator, and only then marks the
   message seen. The same message arriving from two peers while the first
   copy is being validated passes the check twice and is delivered twice.
   Workaround: each topic reader drops ids it has delivered recently (a
   bounded LRU keyed by the same BLAKE2b id). Test:
   ``test_diamond_slow_validator_delivers_once``.
2. Own messages come back. ``Pubsub.publish`` feeds our own message to our
   own subscription channel. Workaround: the reader skips messages whose
   ``from`` is our peer id, so a :data:`Receiver` sees other peers only.
   Test: ``test_line_gossip_exactly_once``.
3. Leaked thread. ``Pubsub`` starts a sweeper thread for its seen-message
   cache in its constructor and never stops it. Workaround: ``run`` stops it
   on the way out. Test: ``test_clean_shutdown_no_stray_threads``.
4. Silent own-publish rejection. ``Pubsub.publish`` returns normally when our
   own topic validator rejects the message. Workaround: ``publish`` checks
   the seen cache afterwards and raises :class:`PublishRejected`. Test:
   ``test_validator_blocks_forwarding``.
5. ``libp2p.io.utils.read_exactly`` gives up after 100 partial reads, which a
   multi-megabyte body over yamux can need; :func:`read_frame` reads in its
   own loop. Test: ``test_request_response_limits`` (a payload near 4 MiB).
6. The built-in bootstrap dials inside ``host.run`` (delaying startup by up
   to 10 s per unreachable address), keeps its retry task outside any nursery
   and forgets an address after a few failures. Workaround: bootstrap is
   ours, one dialer task per address that redials when the connection drops,
   with the backoff of bug 22. Test: ``test_line_gossip_exactly_once`` (C
   reaches B through ``bootstrap``).
7. mDNS, as ``new_host(enable_mDNS=True)`` wires it: registering blocks the
   event loop for zeroconf's ~1.6 s name probe; it advertises the listen
   address as given, so ``/ip4/0.0.0.0`` reaches LAN peers, which cannot
   dial it (identify advertises it too); discoveries arrive through a
   process-wide singleton called from zeroconf's thread; its sweeper is a
   system task. Workaround: mDNS is ours (``_run_mdns``): register and stop
   in worker threads, advertise :attr:`P2P.listen_addrs` where wildcards
   are expanded to interface addresses (also for identify, via
   ``addrs_factory``), hop from zeroconf's thread to trio with the run's
   token into a bounded channel, dial from a task we own. Test:
   ``test_mdns_discovery_dials_and_stops``.
8. The message cache behind IHAVE and IWANT keys messages by ``from+seqno``
   whatever ``msg_id_constructor`` says, so IHAVE announced ids that match
   no seen cache (py peers fetched what they had, js and go peers ignored
   them) and an IWANT for a content id found nothing. Workaround: the router
   keeps its cache by content id (``_ContentCache``). Test:
   ``test_ihave_reaches_a_peer_outside_the_mesh``.
9. A yamux RST that arrives while no read is pending drops the stream's
   bookkeeping, so the next read reports a clean end of stream, not a reset.
   A refused request therefore looks like "the peer closed without a
   response"; :meth:`P2P.request` raises :class:`P2PError` for both. Test:
   ``test_request_response_limits``.
10. ``import libp2p`` detaches the ``libp2p`` logger from the application's
    logging (propagate=False, no handler, so warnings go raw to stderr) and
    the auto-connector pins its logger to INFO. Workaround at import: the
    ``libp2p`` logger propagates again at WARNING and the auto-connector
    inherits it (skipped when LIBP2P_DEBUG is set). Test:
    ``test_libp2p_logs_reach_the_application``.
11. Leaving ``host.run`` leaves the TCP listeners running as trio system
    tasks (the port keeps accepting after the host is gone) and does not
    close the connections; and when the enclosing nursery is cancelled,
    libp2p's connection tasks are cancelled in the middle of their own close,
    so no GO_AWAY is sent and peers keep a dead connection. Workaround: once
    started, ``run`` shields the libp2p stack and turns its own cancellation
    into an orderly stop that calls ``host.close()`` while libp2p's tasks
    still run (bounded by a deadline). Test:
    ``test_clean_shutdown_no_stray_threads`` (no system task left, the port
    refuses, the peer sees us leave at once).
12. Opening a stream for a protocol the peer does not serve logs a
    multi-line ERROR in ``libp2p.host.basic_host`` before raising; the
    request raises :class:`P2PError`, so the line is demoted to DEBUG (bug
    23). Test: ``test_request_response_limits``.
13. The dialer does not resolve ``/dns4``, ``/dns6`` or ``/dns`` multiaddrs
    (only the built-in bootstrap, which we replace, did). Workaround:
    :meth:`P2P.connect` resolves them with trio's ``getaddrinfo``. Test:
    ``test_peers_on_connect_and_deterministic_addrs``.
14. Yamux sends a WINDOW_UPDATE frame after every read of a stream by
    default (``PY_YAMUX_RELEASE_ON_READ=1``), even when go-yamux's
    half-window hysteresis would wait: one more encrypted frame and
    syscall per gossip message per peer. Profiled on a devnet validator it
    was ~17% of the busy time; with it off (go-yamux semantics: release in
    half-window batches) sustained throughput rose from 150 to 178
    certified transfers/s. Workaround: this module sets it to ``0`` unless
    the operator set it. Test: ``test_small_reads_do_not_each_update_the_window``.
15. Every pubsub RPC carries the sender's signed peer record and py-libp2p
    verifies it on every RPC (``maybe_consume_signed_record``, ~9% of a
    devnet validator's busy time), though its bytes change only with the
    peer's addresses. Workaround: the receive path is patched to consume a
    given record once per (host, peer) and again only after 10 minutes or
    when its bytes change. Test: ``test_peer_records_are_verified_once``.
16. Stopping while gossip arrives: pubsub's reader (run by the connection,
    not by pubsub) schedules each message on pubsub's task nursery, checking
    only that the service "is running"; between pubsub's stop and the
    connection's close that nursery is already closed, and the reader dies
    with "Nursery is closed to new arrivals", failing the whole stop.
    Workaround: ``run`` closes the host (every connection) after our tasks
    end and *before* pubsub and gossipsub stop. Test:
    ``test_stopping_while_gossip_arrives``.

17. Adaptive gossip (on by default) re-rates "network health" every 30 s,
    counting the mesh against D = 6, so a small network is always "poor";
    it then stretches the heartbeat to 30-60 s (whatever was configured) and
    widens the degree bounds. Workaround: off (``_Router``); the heartbeat is
    ``heartbeat_interval_s``. Test: ``test_heartbeat_stays_as_configured``.
18. IHAVE goes only to non-mesh peers that are not in backoff, so a peer
    that PRUNEd us (a js-libp2p peer with a full mesh) never hears of a
    message: 0 IHAVE in 170 s were seen at a stock js peer. Workaround:
    ``_Router.gossip_heartbeat`` picks IHAVE targets as the spec and
    go-libp2p do (every gossipsub peer of the topic outside the mesh or
    fanout, not direct, score above the gossip threshold; at least 6 or a
    quarter). Test: ``test_ihave_reaches_a_peer_outside_the_mesh``.
19. A PRUNE's backoff is stored truncated to whole seconds and checked
    without slack, so the heartbeat re-GRAFTs up to a second before the
    remote's backoff ends (js and go penalise that and PRUNE again, so the
    collision repeats every backoff); and the IP-diversity grafting
    (``eclipse_protection``, py-libp2p's own) grafts peers without checking
    backoff at all. Workaround: outbound GRAFTs wait for the backoff plus
    two heartbeats (go-libp2p's slack) while a peer's own GRAFT is accepted
    once the backoff we asked of it is over; IP-diversity grafting off.
    Test: ``test_prune_backoff_is_kept_with_slack``.
20. Gossip seqnos count from ``int(time.time())``, one per message, so
    after a fast restart a busy node reuses them; peers see a known
    from+seqno with new data, log "Equivocation detected" and drop the
    message (and in a larger mesh do not forward it). Workaround: the
    counter starts from the clock in nanoseconds (``_make_pubsub``), as
    go-libp2p's. Test: ``test_seqnos_keep_rising_across_a_restart``.
21. After the host closed its TCP listeners, ``host.get_addrs()`` raises
    OSError (``getsockname`` on a closed socket), and pubsub calls it for
    every message it sends (to sign our peer record): a message forwarded
    while the node stopped crashed the stop. Workaround: the host's
    ``get_addrs`` answers with the last addresses it had. Test:
    ``test_gossip_is_signed_after_the_listeners_closed``.

22. Connections and dials. (a) A network cut closes nothing: both ends keep
    the TCP connection "established" while the kernel retransmits with
    exponential backoff (7 backoffs after a 60 s cut), so nothing flows on
    it for tens of seconds to minutes after the heal, and libp2p never
    replaces it (yamux measures RTT by ping but acts on no missing pong).
    (b) Closing such a connection starts with a GO_AWAY write that blocks
    for good on a full send buffer, leaving it listed. (c) The
    auto-connector dials every peer of the peerstore while there are fewer
    than 50 connections (always, in a federation), outside any backoff of
    ours; (d) the negative peer cache refuses every dial to a peer for 60 s
    after one failed, so a validator back from a restart or a cut stayed
    unreachable for up to a minute. Workaround: every connection is pinged
    (``/ipfs/ping/1.0.0`` on that connection) every ``ping_interval_s``; no
    answer within ``ping_timeout_s`` closes it, socket first
    (``_close_dead``), and a connection we had dialled is redialled;
    ``on_connect`` fires again when the peer stays connected through
    another connection (what was sent on the dead one is lost, so sync
    catches up). The auto-connector is stopped and the negative cache has
    a TTL of zero; our dials (bootstrap, redials, requests) share one
    per-peer backoff (1 s doubling to ``redial_max_backoff_s``), and a
    request to a peer in backoff fails at once without dialling. Tests:
    ``test_dead_connection_is_dropped_and_redialled``,
    ``test_a_down_peer_is_logged_once_and_reached_when_back``, and
    ``tests/node/test_partition.py`` (a validator cut off for a while holds
    every chain head within seconds of the heal).
23. Logging of routine failures: each failed TCP attempt of a dial is an
    ERROR (four per dial, with libp2p's retries), as are a handshake or a
    stream negotiation that a closing peer cut off and yamux reading a
    socket closed under it: about 1,000 ERROR lines per devnet restart
    round. And stopping while a connection is being added logs
    ``[ADDCONN_FAIL] ... Cancelled`` with a traceback. Workaround: a filter
    on those loggers (``_Quiet``) makes them DEBUG records; a down peer is
    logged by us, once, at WARNING ("unreachable"), and once at INFO when
    it is back. Tests: ``test_a_down_peer_is_logged_once_and_reached_when_back``,
    ``test_stopping_while_a_connection_is_added_logs_no_traceback``.

Measured on this machine (2 cores, loopback, one trio process): start
~10 ms; connect ~0.25 s; request round trip p50 3.9 ms, p99 7.4 ms (300 B),
33 ms for 1 MiB, 83 ms for 4 MiB; gossip over two hops at 50 msg/s p50
6.6 ms, p99 16 ms; stop ~0.1 s per connected host (libp2p sleeps 0.1 s in
its connection close). A validator of four cut off behind a black-holing
proxy (``tests/node/test_partition.py``) held every chain head 0.6-3.8 s
after the heal of a 15 s cut and 1.5 s after a 60 s cut with the test's
settings (ping 0.5 s / 1.5 s, redial cap 1 s, dial timeout 3 s), and 9.6 s
after a 60 s cut with the defaults (ping 5 s / 10 s, cap 10 s, dial timeout
10 s): the wait is mostly a redial stuck in the cut until its timeout, plus
the backoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import random
import socket
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import libp2p.pubsub.gossipsub as _gossipsub_module
import libp2p.pubsub.pubsub as _pubsub_module
import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TProtocol
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.discovery.mdns.mdns import MDNSDiscovery, create_mdns_discovery
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.io.exceptions import IOException
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.network.stream.net_stream import NetStream
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.protocol_muxer.multiselect_client import MultiselectClient
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.mcache import CacheEntry, MessageCache
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.utils import maybe_consume_signed_record as _consume_record
from libp2p.rcmgr import Direction
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.address_validation import expand_wildcard_address

from mycelia.node.config import DEFAULTS

# Quirk 15: every pubsub RPC carries the sender's signed peer record, and
# py-libp2p verifies and stores it on every RPC (~9% of a validator's busy
# time). A record's bytes only change when the peer's addresses do, so we
# remember, per receiving host and sending peer, the record bytes already
# consumed, and re-consume only new bytes or after _RECORD_TTL_S.
_RECORD_TTL_S = 600.0
_RECORDS_KEPT = 4096
_consumed_records: OrderedDict[tuple[bytes, bytes, bytes], float] = OrderedDict()


def _consume_record_once(msg: Any, host: Any, peer_id: Any) -> bool:
    if not msg.HasField("senderRecord"):
        return True
    key = (host.get_id().to_bytes(), peer_id.to_bytes(), msg.senderRecord)
    now = time.monotonic()
    seen = _consumed_records.get(key)
    if seen is not None and now - seen < _RECORD_TTL_S:
        return True
    ok = _consume_record(msg, host, peer_id)
    if ok:
        _consumed_records[key] = now
        _consumed_records.move_to_end(key)
        while len(_consumed_records) > _RECORDS_KEPT:
            _consumed_records.popitem(last=False)
    return bool(ok)


_installed = False


def install_workarounds() -> None:
    """Install the process-wide parts of the workarounds below, once: the
    yamux setting (quirk 14), the peer-record cache (quirk 15) and the log
    filters (quirk 23). Called by :meth:`P2P.run` before any host exists —
    not at import, so importing this module changes nothing in libp2p (a
    tool that only reads a peer id gets stock libp2p)."""
    global _installed
    if _installed:
        return
    _installed = True
    # Quirk 14: read at call time by libp2p's yamux, so setting it before any
    # stream exists is enough; an operator's own value wins.
    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")
    _pubsub_module.maybe_consume_signed_record = _consume_record_once  # type: ignore[attr-defined]
    _gossipsub_module.maybe_consume_signed_record = _consume_record_once  # type: ignore[attr-defined]
    for name in _QUIETED:
        logging.getLogger(name).addFilter(_Quiet())


__all__ = [
    "GOSSIP_PROTOCOLS",
    "MAX_GOSSIP_BYTES",
    "P2P",
    "FrameTooLarge",
    "Handler",
    "MalformedFrame",
    "P2PError",
    "PeerUnavailable",
    "PublishRejected",
    "Receiver",
    "RequestTimeout",
    "Validator",
    "frame",
    "install_workarounds",
    "message_id",
    "peer_id_of",
    "read_frame",
]

log = logging.getLogger(__name__)


def _unhijack_libp2p_logging() -> None:
    """Bug 10: give libp2p's log records back to the application's handlers.

    ``import libp2p`` sets the ``libp2p`` logger to propagate=False with no
    handler (unless LIBP2P_DEBUG is set), so its warnings bypass the
    application's logging and reach stderr through logging's last-resort
    handler; and ``libp2p.network.auto_connector`` pins its own level to INFO,
    logging twice every 10 s while a node has fewer than 50 connections.
    Leave LIBP2P_DEBUG setups alone: there libp2p installs its own handlers.
    """
    if os.environ.get("LIBP2P_DEBUG"):
        return
    root = logging.getLogger("libp2p")
    root.propagate = True
    if root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)  # libp2p's INFO is chatty; the app may lower it
    logging.getLogger("libp2p.network.auto_connector").setLevel(logging.NOTSET)


_unhijack_libp2p_logging()


class _Quiet(logging.Filter):
    """Bug 23: py-libp2p logs routine dial failures at ERROR and a stop in
    the middle of adding a connection as a WARNING with a traceback.

    A down peer is redialled with backoff, and each attempt logged an ERROR
    per TCP try (four per dial, with libp2p's retries), plus ERRORs for a
    handshake that a restarting peer cut off: about 1,000 lines per restart
    round of a devnet. The dial's outcome reaches us as an exception, and
    :meth:`P2P._dial_failed` logs a down peer once, at warning. So these
    records become DEBUG (kept only where DEBUG is enabled), and
    ``[ADDCONN_FAIL]`` caused by cancellation (the node stopping) is one too.
    """

    _ROUTINE = (
        "Failed to open TCP stream",
        "Unexpected error opening TCP stream",
        "failed to upgrade security for peer",
        "fail to upgrade mux for peer",
        "Failed to open stream to peer",
        # Negotiating a stream on a connection the peer is closing.
        "MultiselectClient handshake: write failed",
        "MultiselectClient handshake: read failed",
    )
    # yamux reading from a socket that was closed under it: a connection
    # closing (ours or the peer's), followed by the usual cleanup.
    _CLOSED = ("ClosedResourceError", "BrokenResourceError")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not isinstance(record.msg, str):
            return True
        routine = record.msg.startswith(self._ROUTINE) or (
            record.msg.startswith("Error in handle_incoming for peer")
            and any(name in record.msg for name in self._CLOSED)
        )
        if not routine and record.msg.startswith("[ADDCONN_FAIL]"):
            args = record.args if isinstance(record.args, tuple) else ()
            routine = len(args) > 1 and _is_cancellation(args[1])
        if not routine:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def _is_cancellation(exc: object) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cancellation(e) for e in exc.exceptions)
    return False


#: libp2p loggers that get the :class:`_Quiet` filter (``install_workarounds``).
_QUIETED = (
    "libp2p.transport.tcp.tcp",
    "libp2p.network.swarm",
    "libp2p.host.basic_host",
    "libp2p.protocol_muxer.multiselect_client",
    "libp2p.stream_muxer.yamux.yamux",
)

# Listed most preferred first; multistream-select picks the first both speak.
GOSSIP_PROTOCOLS: tuple[str, ...] = ("/meshsub/1.2.0", "/meshsub/1.1.0", "/meshsub/1.0.0")

# py-libp2p refuses inbound pubsub RPCs over 1 MiB (go-libp2p's default too).
# The RPC carries the data plus the topic, seqno, key, signature and a signed
# peer record, so leave generous room for that envelope.
MAX_GOSSIP_BYTES = (1 << 20) - (16 << 10)

# A uint64 needs at most 10 LEB128 bytes.
_MAX_VARINT_BYTES = 10

# How many recently delivered message ids each topic reader remembers (bug 1).
# Only needs to cover messages in flight at the same time, so it stays small.
_DEDUP_WINDOW = 4096

# Redial backoff (bugs 6, 22): the first retry after a second, doubling up
# to ``redial_max_backoff_s``. A dial of a down peer costs one TCP connect
# and, now, no log line, so the cap stays short: a peer back after a cut or
# a restart is reached within seconds. A live bootstrap connection is
# checked every second (a dict lookup) so a dropped one is redialled at once.
_REDIAL_MIN_BACKOFF_S = 1.0
_CONNECTED_CHECK_S = 1.0
# A peer we dialled and lost to a dead connection (bug 22) is redialled for
# this long; past it, it is a peer that left (bootstrap peers: forever).
_REDIAL_FOR_S = 900.0
# Peers remembered as down, for backoff and one warning each.
_DOWN_KEPT = 4096
# mDNS re-announces, so a full channel may drop a discovery without loss.
_MDNS_CHANNEL_SIZE = 64
_PEERSTORE_SWEEP_S = 300
# Closing connections and listeners at shutdown; libp2p's own steps are
# quick on a healthy host, this only bounds a wedged one.
_CLOSE_TIMEOUT_S = 2.0


async def _close_host(host: IHost) -> None:
    """Bug 11: leaving ``host.run`` neither closes the connections nor stops
    the TCP listeners (system tasks that keep accepting); ``host.close()``
    does both. Shielded and bounded: it runs on the way out of a cancel."""
    with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT_S):
        await host.close()


class P2PError(Exception):
    """Base class of every error this module raises."""


class RequestTimeout(P2PError):
    """A request got no complete response in time (or a read timed out)."""


class FrameTooLarge(P2PError):
    """A frame's declared length exceeds the limit; its body was not read."""


class MalformedFrame(P2PError):
    """A frame's length prefix is invalid or its body was cut short."""


class PeerUnavailable(P2PError):
    """The peer is unknown, unreachable, or its id is not a peer id."""


class PublishRejected(P2PError):
    """Our own topic validator refused the data, so it was not sent."""


Handler = Callable[[str, bytes], Awaitable[bytes]]
"""Stream handler: (peer id, request) -> response."""
Validator = Callable[[str, bytes], Awaitable[bool]]
"""Gossip validator: (forwarding peer id, data) -> accept?"""
Receiver = Callable[[str, bytes], Awaitable[None]]
"""Gossip receiver: (origin peer id, data), once per accepted message."""


class _Reader(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...


# --------------------------------------------------------------------------
# Framing


def frame(data: bytes) -> bytes:
    """``data`` prefixed with its length as an unsigned LEB128 varint."""
    n = len(data)
    prefix = bytearray()
    while n >= 0x80:
        prefix.append((n & 0x7F) | 0x80)
        n >>= 7
    prefix.append(n)
    return bytes(prefix) + data


async def _read_some(reader: _Reader, n: int, *, started: bool = True) -> bytes:
    try:
        chunk = await reader.read(n)
    except StreamEOF:
        chunk = b""
    if not chunk:
        # Before the first byte this is usually a refusal: the peer closed or
        # reset the stream without answering (bug 9: a reset reads as EOF).
        raise MalformedFrame(
            "stream ended inside a frame" if started else "stream ended before a frame"
        )
    return chunk


async def read_frame(reader: _Reader, max_bytes: int) -> bytes:
    """Read one frame from ``reader`` (anything with ``async read(n)``).

    Raises :class:`FrameTooLarge` as soon as the length prefix says more than
    ``max_bytes`` (the body is not read), :class:`MalformedFrame` for a bad
    prefix or a body cut short. Stream errors other than EOF propagate.
    """
    length = 0
    for i in range(_MAX_VARINT_BYTES):
        byte = (await _read_some(reader, 1, started=i > 0))[0]
        length |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            # A final zero byte after the first adds nothing: a padded,
            # non-minimal encoding. Refusing it keeps one encoding per length.
            if byte == 0 and i > 0:
                raise MalformedFrame("non-minimal varint length")
            break
    else:
        raise MalformedFrame("varint length longer than 10 bytes")
    if length > max_bytes:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {max_bytes}")
    # Own loop rather than libp2p's read_exactly (bug 5).
    parts: list[bytes] = []
    remaining = length
    while remaining:
        chunk = await _read_some(reader, remaining)
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def peer_id_of(public_key: bytes) -> str:
    """The peer id (base58) of the node whose Ed25519 public key this is.

    Validators are known by their keys; this is how to reach one. Same
    derivation as :attr:`P2P.peer_id` from the seed.
    """
    if len(public_key) != 32:
        raise ValueError("expected a 32-byte Ed25519 public key")
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(bytes(public_key))).to_base58()


def message_id(data: bytes) -> bytes:
    """The gossip message id: BLAKE2b-256 of the data (content-addressed)."""
    return hashlib.blake2b(data, digest_size=32).digest()


def _msg_id(msg: rpc_pb2.Message) -> bytes:
    return message_id(msg.data)


# --------------------------------------------------------------------------
# Gossipsub as configured here, with its fixes (quirks 8, 17-20)

# The protocols py-libp2p's router treats as gossipsub (as opposed to floodsub).
_GOSSIPSUB_PROTOCOLS = frozenset(
    TProtocol(p)
    for p in (
        "/meshsub/1.0.0",
        "/meshsub/1.1.0",
        "/meshsub/1.2.0",
        "/meshsub/1.3.0",
        "/meshsub/1.4.0",
        "/meshsub/2.0.0",
    )
)
# go-libp2p's gossip parameters: IHAVE goes to at least D_lazy peers outside
# the mesh, or a quarter of them if there are more; at most 5000 ids per IHAVE.
_D_LAZY = 6
_GOSSIP_FACTOR = 0.25
_MAX_IHAVE_IDS = 5000


class _ContentCache(MessageCache):
    """Quirk 8: py-libp2p's message cache keys every message by from+seqno
    whatever ``msg_id_constructor`` says, so IHAVE announced ids no peer
    uses (py peers then IWANT what they already have; js and go peers never
    match them) and IWANT for a content id found nothing. This one keys by
    the content id, as every other part of the router does."""

    def put(self, msg: rpc_pb2.Message) -> None:
        mid = _msg_id(msg)
        if mid in self.msgs:
            return
        self.msgs[mid] = msg
        self.history[0].append(CacheEntry(mid, msg.topicIDs))


class _Router(GossipSub):
    """``GossipSub`` with the settings of the module docstring and four fixes.

    - Quirk 17: the adaptive gossip logic (on by default) rewrites
      ``heartbeat_interval`` to 30-60 s whenever its "network health" is
      below 0.7, which a small network always is (health counts the mesh
      against D = 6), and widens the degree bounds. Off: the heartbeat is
      what the config says.
    - Quirk 18: IHAVE goes only to peers outside the mesh that are *not in
      backoff*, so a peer that PRUNEd us (a full js-libp2p mesh does) never
      hears of a message. :meth:`gossip_heartbeat` follows the spec and
      go-libp2p: every gossipsub peer of the topic outside the mesh (or
      fanout), not direct, with a score above the gossip threshold.
    - Quirk 19: a PRUNE's backoff is stored in whole seconds, truncated, and
      checked without slack, so we re-GRAFT up to a second before the
      remote's backoff ends; js and go peers penalise a GRAFT inside their
      backoff and PRUNE again. We wait for the backoff plus two heartbeats
      (go-libp2p's slack) before grafting, and accept a peer's GRAFT as soon
      as the backoff we asked of it is over. The IP-diversity grafting
      (``eclipse_protection``, a py-libp2p extension, not in the spec)
      grafts peers without checking their backoff at all: off, the
      validators of a federation are known peers anyway.
    - Quirk 8: the message cache is keyed by content id (:class:`_ContentCache`).
    """

    def __init__(self, heartbeat_interval_s: float) -> None:
        super().__init__(
            protocols=[TProtocol(p) for p in GOSSIP_PROTOCOLS],
            # go-libp2p's mesh degrees.
            degree=6,
            degree_low=4,
            degree_high=12,
            # Annotated int, used as trio.sleep(seconds): a float is fine.
            heartbeat_interval=heartbeat_interval_s,  # type: ignore[arg-type]
            spam_protection_enabled=False,
            adaptive_gossip_enabled=False,
            eclipse_protection_enabled=False,
        )
        self.mcache = _ContentCache(self.mcache.window_size, self.mcache.history_size)
        # (topic, peer) -> when the backoff we asked of (or promised to) the
        # peer ends, exactly; ``back_off`` holds it rounded up plus slack.
        self._backoff_ends: dict[tuple[str, ID], float] = {}

    def gossip_heartbeat(self) -> defaultdict[ID, dict[str, list[bytes]]]:
        gossip: defaultdict[ID, dict[str, list[bytes]]] = defaultdict(dict)
        pubsub = self.pubsub
        if pubsub is None:
            return gossip
        topics = [(t, self.mesh[t]) for t in self.mesh]
        topics += [(t, peers) for t, peers in self.fanout.items() if t not in self.mesh]
        for topic, exclude in topics:
            ids = self.mcache.window(topic)
            if not ids:
                continue
            if len(ids) > _MAX_IHAVE_IDS:
                ids = random.sample(ids, _MAX_IHAVE_IDS)
            scorer = self.scorer
            candidates = [
                peer
                for peer in pubsub.peer_topics.get(topic, ())
                if peer not in exclude
                and peer not in self.direct_peers
                and self.peer_protocol.get(peer) in _GOSSIPSUB_PROTOCOLS
                and (scorer is None or scorer.allow_gossip(peer, [topic]))
            ]
            count = min(len(candidates), max(_D_LAZY, int(len(candidates) * _GOSSIP_FACTOR)))
            for peer in random.sample(candidates, count):
                gossip[peer][topic] = list(ids)
        return gossip

    def _add_back_off(
        self, peer: ID, topic: str, is_unsubscribe: bool, backoff_duration: int = 0
    ) -> None:
        super()._add_back_off(peer, topic, is_unsubscribe, backoff_duration)
        if backoff_duration > 0:
            duration = float(backoff_duration)
        elif is_unsubscribe:
            duration = float(self.unsubscribe_back_off)
        else:
            duration = float(self.prune_back_off)
        end = time.time() + duration
        key = (topic, peer)
        end = max(end, self._backoff_ends.get(key, 0.0))
        self._backoff_ends[key] = end
        slack = 2 * float(self.heartbeat_interval)
        self.back_off[topic][peer] = max(self.back_off[topic][peer], math.ceil(end + slack))

    async def handle_graft(self, graft_msg: rpc_pb2.ControlGraft, sender_peer_id: ID) -> None:
        key = (graft_msg.topicID, sender_peer_id)
        end = self._backoff_ends.get(key)
        if end is not None and end <= time.time():
            # The backoff we asked for is over; the slack is ours alone.
            del self._backoff_ends[key]
            self.back_off.get(graft_msg.topicID, {}).pop(sender_peer_id, None)
        await super().handle_graft(graft_msg, sender_peer_id)

    def remove_peer(self, peer_id: ID) -> None:
        super().remove_peer(peer_id)
        for key in [k for k in self._backoff_ends if k[1] == peer_id]:
            del self._backoff_ends[key]


def _make_pubsub(host: IHost, heartbeat_interval_s: float) -> tuple[Pubsub, _Router]:
    """Pubsub and its router as this module runs them (tests build them too)."""
    router = _Router(heartbeat_interval_s)
    pubsub = Pubsub(host, router, strict_signing=True, msg_id_constructor=_msg_id)
    # Quirk 20: the seqno counter starts at int(time.time()) and counts one
    # per message, so a node that published more messages than seconds have
    # passed reuses seqnos after a fast restart; peers see from+seqno again
    # with other data, log "Equivocation detected" and drop the messages.
    # Start from the clock in nanoseconds, as go-libp2p does: a restart can
    # only move it forward (a uint64 until the year 2554).
    pubsub.counter = time.time_ns()
    return pubsub, router


def _parse_peer_id(peer_id: str) -> ID:
    try:
        pid = ID.from_base58(peer_id)
    except Exception as exc:  # base58 raises ValueError; be broad, input is external
        raise PeerUnavailable(f"not a peer id: {peer_id!r}") from exc
    if not pid.to_bytes():
        raise PeerUnavailable(f"not a peer id: {peer_id!r}")
    return pid


def _parse_p2p_addr(addr: str) -> PeerInfo:
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:
        raise PeerUnavailable(f"not a multiaddr ending in /p2p/<peer id>: {addr!r}") from exc


# --------------------------------------------------------------------------
# Connection notifications


class _ConnNotifee(INotifee):
    """Turns libp2p connection events into ``on_connect`` callbacks.

    libp2p awaits notifees on its connection path, so this only records the
    peer and spawns the callbacks into the P2P's own nursery.
    """

    def __init__(self, owner: P2P) -> None:
        self._owner = owner

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = getattr(conn.muxed_conn, "peer_id", None)
        if peer is not None:
            self._owner._peer_connected(peer)
            self._owner._watch(conn, peer)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = getattr(conn.muxed_conn, "peer_id", None)
        if peer is not None:
            self._owner._peer_disconnected(peer)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


class _Topic:
    """One subscribed topic: its receiver and the cancel scope of its reader."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.scope = trio.CancelScope()
        self.delivered: OrderedDict[bytes, None] = OrderedDict()


class _Down:
    """A peer we could not dial: since when, how often, and when to try again."""

    __slots__ = ("failures", "retry_at", "since")

    def __init__(self, now: float) -> None:
        self.since = now
        self.failures = 0
        self.retry_at = now


# --------------------------------------------------------------------------
# The service


class P2P:
    """A libp2p host with gossipsub and one-shot request/response streams.

    Construct, then ``await nursery.start(p2p.run)``; everything else needs
    the running host and raises :class:`P2PError` before that.
    """

    def __init__(
        self,
        seed: bytes,
        *,
        listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
        bootstrap: Sequence[str] = (),
        mdns: bool = False,
        max_frame_bytes: int = DEFAULTS.p2p.max_frame_bytes,
        request_timeout_s: float = DEFAULTS.p2p.request_timeout_s,
        heartbeat_interval_s: float = DEFAULTS.p2p.heartbeat_interval_s,
        ping_interval_s: float = DEFAULTS.p2p.ping_interval_s,
        ping_timeout_s: float = DEFAULTS.p2p.ping_timeout_s,
        redial_max_backoff_s: float = DEFAULTS.p2p.redial_max_backoff_s,
        announce: Sequence[str] = (),
    ) -> None:
        if not isinstance(seed, bytes | bytearray) or len(seed) != 32:
            raise ValueError("seed must be the node's 32-byte Ed25519 seed")
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        for name, value in (
            ("request_timeout_s", request_timeout_s),
            ("heartbeat_interval_s", heartbeat_interval_s),
            ("ping_interval_s", ping_interval_s),
            ("ping_timeout_s", ping_timeout_s),
            ("redial_max_backoff_s", redial_max_backoff_s),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds")
        private = Ed25519PrivateKey.from_bytes(bytes(seed))
        self._key_pair = KeyPair(private, private.get_public_key())
        try:
            self._listen = [multiaddr.Multiaddr(a) for a in listen]
        except Exception as exc:
            raise ValueError(f"bad listen address in {list(listen)!r}: {exc}") from exc
        self._id = ID.from_pubkey(self._key_pair.public_key)
        # Parse now so a bad config line fails at startup, naming the address.
        # Our own address is skipped: one devnet list can serve every member.
        self._bootstrap: list[str] = []
        for addr in bootstrap:
            try:
                info = _parse_p2p_addr(addr)
            except PeerUnavailable as exc:
                raise ValueError(f"bad bootstrap address: {exc}") from exc
            if info.peer_id != self._id:
                self._bootstrap.append(addr)
        self._mdns = mdns
        self._max_frame_bytes = max_frame_bytes
        self._request_timeout_s = request_timeout_s
        self._heartbeat_interval_s = heartbeat_interval_s
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._redial_max_backoff_s = redial_max_backoff_s
        try:
            self._announce = [multiaddr.Multiaddr(a) for a in announce]
        except Exception as exc:
            raise ValueError(f"bad announce address in {list(announce)!r}: {exc}") from exc

        self._handlers: dict[str, tuple[Handler, int, float]] = {}
        self._on_connect: list[Callable[[str], Awaitable[None]]] = []
        self._topics: dict[str, _Topic] = {}
        self._connected: set[ID] = set()
        # Connections whose keepalive runs; peers that failed a dial; the
        # address we last reached each peer on; peers being redialled.
        self._watched: set[INetConn] = set()
        self._down: OrderedDict[ID, _Down] = OrderedDict()
        self._dialled: dict[ID, str] = {}
        self._redialling: set[ID] = set()
        self._bootstrap_peers = {_parse_p2p_addr(a).peer_id for a in self._bootstrap}

        self._host: IHost | None = None
        self._pubsub: Pubsub | None = None
        self._router: _Router | None = None
        self._nursery: trio.Nursery | None = None
        self._running = False

    # ---- identity and peers ------------------------------------------------

    @property
    def peer_id(self) -> str:
        """Our peer id, base58; derived from the seed alone."""
        return self._id.to_base58()

    @property
    def listen_addrs(self) -> list[str]:
        """Listening multiaddrs with ``/p2p/<peer id>`` and the real ports."""
        host = self._require_host()
        return [str(a) for a in host.get_addrs()]

    def peers(self) -> list[str]:
        """Peer ids we hold at least one connection to."""
        if self._host is None:
            return []
        network = self._host.get_network()
        return [
            p.to_base58() for p in self._host.get_connected_peers() if network.get_connections(p)
        ]

    async def connect(self, addr: str) -> str:
        """Dial ``addr`` (a multiaddr ending in ``/p2p/<peer id>``); return the peer id."""
        host = self._require_host()
        info = _parse_p2p_addr(addr)
        pid = info.peer_id
        if pid == self._id:
            raise PeerUnavailable("refusing to dial ourselves")
        with trio.move_on_after(self._request_timeout_s) as scope:
            try:
                info = await _resolve_dns(info)
                await host.connect(info)
            except Exception as exc:
                self._dial_failed(pid, exc)
                raise PeerUnavailable(f"cannot connect to {addr}: {exc}") from exc
        if scope.cancelled_caught:
            timed_out = PeerUnavailable(f"connecting to {addr} timed out")
            self._dial_failed(pid, timed_out)
            raise timed_out
        self._dialled[pid] = addr
        return pid.to_base58()

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to ``peer_id`` (a bootstrap peer is redialled)."""
        host = self._require_host()
        await host.disconnect(_parse_peer_id(peer_id))

    def on_connect(self, fn: Callable[[str], Awaitable[None]]) -> None:
        """Call ``fn(peer_id)`` in a task we own whenever a peer becomes connected.

        Fires once per peer per transition from no connection to one (a second
        simultaneous connection to the same peer does not fire again), and
        again when a dead connection is dropped while the peer stays connected
        through another: what was sent on the dead one is lost, so callers
        catching up on connect (sync) should do it then too. Peers already
        connected when ``fn`` is registered are reported at once, so
        registering after ``run`` started misses no one. Exceptions are
        logged, never propagated.
        """
        self._on_connect.append(fn)
        nursery = self._nursery
        if nursery is not None:
            for peer in self._connected:
                nursery.start_soon(self._call_on_connect, fn, peer.to_base58())

    # ---- gossip ------------------------------------------------------------

    async def subscribe(
        self, topic: str, receiver: Receiver, validator: Validator | None = None
    ) -> None:
        """Join ``topic``; deliver each accepted message from another peer to ``receiver``.

        ``validator`` runs on every message of the topic, our own publishes
        included, before it is delivered or forwarded; False (or an exception)
        drops it. See the module docstring on keeping both quick and pure.
        """
        pubsub = self._require_pubsub()
        nursery = self._nursery
        assert nursery is not None
        if topic in self._topics:
            raise P2PError(f"already subscribed to {topic!r}")
        if validator is not None:
            pubsub.set_topic_validator(topic, self._wrap_validator(topic, validator), True)
        state = _Topic(receiver)
        self._topics[topic] = state
        try:
            subscription = await pubsub.subscribe(topic)
        except BaseException:
            del self._topics[topic]
            pubsub.remove_topic_validator(topic)
            raise
        nursery.start_soon(self._read_topic, topic, state, subscription)

    def topic_peers(self, topic: str) -> list[str]:
        """Connected peers that have told us they subscribe to ``topic``."""
        if self._pubsub is None:
            return []
        return [p.to_base58() for p in self._pubsub.peer_topics.get(topic, ())]

    async def unsubscribe(self, topic: str) -> None:
        """Leave ``topic``; its receiver gets nothing more. No-op if not subscribed."""
        state = self._topics.pop(topic, None)
        if state is None:
            return
        state.scope.cancel()
        pubsub = self._pubsub
        if pubsub is not None:
            pubsub.remove_topic_validator(topic)
            await pubsub.unsubscribe(topic)

    async def publish(self, topic: str, data: bytes) -> None:
        """Sign and gossip ``data`` on ``topic``.

        Call at most a few hundred times per second in total and batch
        (module docstring): libp2p drops what does not fit its 32-message
        queues. Identical data within the seen-cache TTL is one message and
        is not sent again. Raises :class:`FrameTooLarge` over
        :data:`MAX_GOSSIP_BYTES`, :class:`PublishRejected` if our own
        validator refuses it.
        """
        pubsub = self._require_pubsub()
        if len(data) > MAX_GOSSIP_BYTES:
            raise FrameTooLarge(
                f"gossip message of {len(data)} bytes exceeds {MAX_GOSSIP_BYTES}; batch smaller"
            )
        mid = message_id(data)
        if pubsub.seen_messages.has(mid):
            log.debug("not republishing already seen data on %s", topic)
            return
        await pubsub.publish(topic, bytes(data))
        # libp2p returns normally when our own validator rejects (bug 4); an
        # accepted message is in the seen cache by the time publish returns.
        if not pubsub.seen_messages.has(mid):
            raise PublishRejected(f"our own validator rejected a message on {topic!r}")

    # ---- streams -----------------------------------------------------------

    def set_handler(
        self,
        protocol: str,
        handler: Handler,
        *,
        max_request_bytes: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Serve ``protocol``: one request frame in, ``handler``, one response frame out.

        ``max_request_bytes`` defaults to ``max_frame_bytes``; ``timeout_s``
        (default ``request_timeout_s``) bounds the whole exchange on our side
        (read, handler, write). A refused or failed stream is reset and
        logged in one line; the server keeps serving.
        """
        limit = self._max_frame_bytes if max_request_bytes is None else max_request_bytes
        timeout = self._request_timeout_s if timeout_s is None else timeout_s
        if limit < 0 or timeout <= 0:
            raise ValueError("max_request_bytes must be >= 0 and timeout_s > 0")
        self._handlers[protocol] = (handler, limit, timeout)
        if self._host is not None:
            self._register_handler(self._host, protocol)

    async def request(
        self,
        peer_id: str,
        protocol: str,
        payload: bytes,
        *,
        max_response_bytes: int | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Send one request frame to ``peer_id`` on ``protocol``; return the response.

        Raises :class:`RequestTimeout`, :class:`FrameTooLarge` (response over
        ``max_response_bytes``, default ``max_frame_bytes``),
        :class:`PeerUnavailable` (unknown or unreachable peer) or
        :class:`P2PError` (protocol refused, stream reset, malformed frame).
        """
        host = self._require_host()
        pid = _parse_peer_id(peer_id)
        if pid == self._id:
            raise PeerUnavailable("refusing to request from ourselves")
        limit = self._max_frame_bytes if max_response_bytes is None else max_response_bytes
        timeout = self._request_timeout_s if timeout_s is None else timeout_s
        if len(payload) > self._max_frame_bytes:
            # More than we would accept ourselves: do not make the peer refuse it.
            raise FrameTooLarge(f"request of {len(payload)} bytes exceeds {self._max_frame_bytes}")
        dialling = not host.get_network().get_connections(pid)
        if dialling:
            if not self._known_addrs(pid):
                raise PeerUnavailable(f"no connection to and no address for {peer_id}")
            wait = self._retry_in(pid)
            if wait > 0:  # down: the redial backoff decides when to dial (bug 22)
                raise PeerUnavailable(f"{peer_id} is unreachable; next dial in {wait:.1f} s")
        with trio.move_on_after(timeout):
            try:
                stream = await host.new_stream(pid, [TProtocol(protocol)])
            except Exception as exc:
                if host.get_network().get_connections(pid):
                    raise P2PError(f"{peer_id} refused {protocol}: {exc}") from exc
                if dialling:
                    self._dial_failed(pid, exc)
                raise PeerUnavailable(f"cannot reach {peer_id}: {exc}") from exc
            done = False
            try:
                await stream.write(frame(payload))
                response = await read_frame(stream, limit)
                done = True
            except IOException as exc:
                raise P2PError(f"{protocol} to {peer_id}: stream failed ({exc!r})") from exc
            finally:
                # Reset on any failure (timeout included) so the server's
                # write fails fast instead of filling a window nobody reads.
                await (_close(stream) if done else _abort(stream))
            return response
        if dialling and not host.get_network().get_connections(pid):
            timed_out = RequestTimeout(f"dialling {peer_id} timed out")
            self._dial_failed(pid, timed_out)
            raise PeerUnavailable(str(timed_out)) from timed_out
        raise RequestTimeout(f"{protocol} to {peer_id}: no response within {timeout} s")

    async def send_raw(
        self,
        peer_id: str,
        protocol: str,
        data: bytes,
        *,
        max_response_bytes: int | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Write raw ``data`` on a new stream, half-close, return all the peer sends back.

        For tests and diagnostics (malformed frames, a peer's refusal): no
        framing either way. A refusal comes back as ``b""`` (py-libp2p reports
        a reset as a plain end of stream, bug 9) or as :class:`P2PError` when
        it does surface the reset; :class:`RequestTimeout` if the peer neither
        answers nor closes.
        """
        host = self._require_host()
        pid = _parse_peer_id(peer_id)
        limit = self._max_frame_bytes if max_response_bytes is None else max_response_bytes
        timeout = self._request_timeout_s if timeout_s is None else timeout_s
        with trio.move_on_after(timeout):
            try:
                stream = await host.new_stream(pid, [TProtocol(protocol)])
            except Exception as exc:
                raise PeerUnavailable(f"cannot open {protocol} to {peer_id}: {exc}") from exc
            done = False
            try:
                await stream.write(data)
                # libp2p declares new_stream's result as INetStream, which has
                # no half-close; what its host opens is a NetStream, which does.
                await cast(NetStream, stream).close_write()
                received = bytearray()
                while len(received) <= limit:
                    try:
                        received += await stream.read(limit + 1 - len(received))
                    except StreamEOF:
                        done = True
                        return bytes(received)
                raise FrameTooLarge(f"more than {limit} bytes came back")
            except IOException as exc:
                raise P2PError(f"{protocol} to {peer_id}: stream failed ({exc!r})") from exc
            finally:
                await (_close(stream) if done else _abort(stream))
        raise RequestTimeout(f"{protocol} to {peer_id}: no close within {timeout} s")

    # ---- lifecycle ---------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the host until cancelled; ``started()`` once listening and pubsub is ready.

        Cancellation is turned into an orderly stop (bug 11): our tasks end
        first, then pubsub, then connections and listeners are closed while
        libp2p's own tasks still run, so peers see a clean close at once.
        The stop is bounded by a few seconds; past that, libp2p is cancelled.
        """
        if self._running:
            raise P2PError("this P2P is already running")
        install_workarounds()
        self._running = True
        try:
            stop = trio.Event()
            async with trio.open_nursery() as guard:
                await guard.start(self._run_stack, stop)
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    stop.set()
        finally:
            self._running = False

    async def _run_stack(self, stop: trio.Event, *, task_status: Any) -> None:
        host = new_host(
            key_pair=self._key_pair,
            listen_addrs=self._listen,
            muxer_preference="YAMUX",
            # Advertise dialable addresses, not 0.0.0.0 (bug 7).
            addrs_factory=self._advertised,
            # mDNS and bootstrap deliberately not passed (bugs 6, 7): ours.
        )
        _keep_addrs_through_close(host)
        pubsub, router = _make_pubsub(host, self._heartbeat_interval_s)
        host.get_network().register_notifee(_ConnNotifee(self))
        closed = False
        try:
            with trio.CancelScope() as stack:
                async with host.run(listen_addrs=self._listen):
                    await _tame_dialling(host.get_network())
                    try:
                        async with (
                            background_trio_service(pubsub),
                            background_trio_service(router),
                        ):
                            await pubsub.wait_until_ready()
                            async with trio.open_nursery() as nursery:
                                self._host, self._pubsub, self._nursery = host, pubsub, nursery
                                self._router = router
                                self._start_tasks(host, nursery)
                                # From here only `stop` ends the stack, so
                                # libp2p's tasks are alive for the close below.
                                stack.shield = True
                                task_status.started()
                                await stop.wait()
                                stack.deadline = trio.current_time() + _CLOSE_TIMEOUT_S
                                nursery.cancel_scope.cancel()  # our tasks first
                            # Bug 16: connections close while pubsub still
                            # runs; a message read after its task nursery
                            # closed would crash the connection's handler.
                            closed = True
                            await _close_host(host)
                    finally:
                        self._host = self._pubsub = self._nursery = self._router = None
                        if not closed:
                            await _close_host(host)
            if stack.cancelled_caught:
                log.warning("p2p %s: libp2p did not stop in time; cancelled it", self.peer_id)
        finally:
            self._topics.clear()
            self._connected.clear()
            # Bug 3: Pubsub never stops its seen-cache sweeper thread. The
            # stop is an Event.set and a join of a thread that wakes at once.
            pubsub.seen_messages.stop()

    def _start_tasks(
        self,
        host: IHost,
        nursery: trio.Nursery,
    ) -> None:
        for protocol in self._handlers:
            self._register_handler(host, protocol)
        nursery.start_soon(host.get_peerstore().start_cleanup_task, _PEERSTORE_SWEEP_S)
        for addr in self._bootstrap:
            nursery.start_soon(self._keep_connected, addr)
        # Connections that came in before our nursery existed.
        for conn in host.get_network().get_connections():
            peer = getattr(conn.muxed_conn, "peer_id", None)
            if peer is not None:
                self._peer_connected(peer)
                self._watch(conn, peer)
        if self._mdns:
            nursery.start_soon(self._run_mdns, host)
        log.info("p2p %s listening on %s", self.peer_id, ", ".join(self.listen_addrs))

    # ---- internals ---------------------------------------------------------

    def _require_host(self) -> IHost:
        if self._host is None:
            raise P2PError("P2P is not running")
        return self._host

    def _require_pubsub(self) -> Pubsub:
        if self._pubsub is None:
            raise P2PError("P2P is not running")
        return self._pubsub

    def _known_addrs(self, peer: ID) -> bool:
        host = self._require_host()
        try:
            return bool(host.get_peerstore().addrs(peer))
        except Exception:  # PeerStoreError: never heard of it
            return False

    def _advertised(self, addrs: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
        """What identify, peer records and mDNS advertise: the ``announce``
        addresses if set (a port forward, a proxy), else the listen addresses
        with wildcards expanded (bug 7)."""
        return list(self._announce) if self._announce else _expand_wildcards(addrs)

    def _peer_connected(self, peer: ID) -> None:
        down = self._down.pop(peer, None)
        if down is not None:
            log.info(
                "peer %s reachable again after %.0f s (%d failed dials)",
                peer,
                trio.current_time() - down.since,
                down.failures,
            )
        if peer in self._connected or peer == self._id:
            return
        self._connected.add(peer)
        self._fire_on_connect(peer)

    def _fire_on_connect(self, peer: ID) -> None:
        nursery = self._nursery
        if nursery is None:
            return
        # base58 once per connection, not once per listener
        name = peer.to_base58()
        for fn in self._on_connect:
            try:
                nursery.start_soon(self._call_on_connect, fn, name)
            except RuntimeError:  # nursery closing: we are shutting down
                return

    # ---- dialling and keeping connections alive (bug 22) --------------------

    def _dial_failed(self, peer: ID, exc: BaseException) -> None:
        """Note a failed dial: one warning per down peer, then the backoff."""
        now = trio.current_time()
        down = self._down.get(peer)
        if down is None:
            down = self._down[peer] = _Down(now)
            while len(self._down) > _DOWN_KEPT:
                self._down.popitem(last=False)
            log.warning(
                "peer %s unreachable (%s); redialling with backoff, quiet until it answers",
                peer,
                _reason(exc),
            )
        else:
            log.debug("peer %s still unreachable: %s", peer, _reason(exc))
        down.failures += 1
        backoff = _REDIAL_MIN_BACKOFF_S * 2 ** min(down.failures - 1, 30)
        down.retry_at = now + min(backoff, self._redial_max_backoff_s)

    def _retry_in(self, peer: ID) -> float:
        """Seconds until ``peer`` may be dialled again (0 unless it is down)."""
        down = self._down.get(peer)
        return 0.0 if down is None else max(0.0, down.retry_at - trio.current_time())

    def _watch(self, conn: INetConn, peer: ID) -> None:
        """Start the keepalive of a new connection (once)."""
        nursery = self._nursery
        if nursery is None or conn in self._watched or peer == self._id:
            return
        self._watched.add(conn)
        try:
            nursery.start_soon(self._keepalive, conn, peer)
        except RuntimeError:  # nursery closing: we are shutting down
            self._watched.discard(conn)

    async def _keepalive(self, conn: INetConn, peer: ID) -> None:
        """Ping ``conn`` every ``ping_interval_s``; drop it if a ping goes
        unanswered for ``ping_timeout_s``.

        Bug 22: a network cut does not close TCP connections. Both ends keep
        them "established" while the kernel retransmits with exponential
        backoff, so after the cut heals nothing flows on them for tens of
        seconds to minutes, and libp2p never replaces them (yamux measures
        RTT by ping but acts on no missing pong). Any answer counts (a pong,
        a refusal, a reset): only silence means dead.
        """
        try:
            while not conn.is_closed:
                await trio.sleep(self._ping_interval_s)
                if conn.is_closed:
                    return
                dead = False
                with trio.move_on_after(self._ping_timeout_s) as waited:
                    try:
                        await _ping(conn, self._ping_timeout_s)
                    except trio.TooSlowError:  # libp2p's own 10 s ping timeout
                        dead = True
                    except Exception as exc:
                        log.debug("ping to %s: %r (an answer: alive)", peer, exc)
                if (dead or waited.cancelled_caught) and not conn.is_closed:
                    await self._drop_dead(conn, peer)
                    return
        finally:
            self._watched.discard(conn)

    async def _drop_dead(self, conn: INetConn, peer: ID) -> None:
        """Close a connection that stopped answering, and redial if it was ours."""
        outbound = getattr(conn, "direction", None) == Direction.OUTBOUND
        addr = self._dialled.get(peer)
        if addr is None and outbound:
            remote = [str(a) for a in conn.get_transport_addresses()]
            addr = f"{remote[0]}/p2p/{peer}" if remote else None
        log.warning(
            "connection to %s answered no ping for %g s: closing it%s",
            peer,
            self._ping_timeout_s,
            " and redialling" if outbound or peer in self._bootstrap_peers else "",
        )
        await _close_dead(conn)
        host = self._host
        if host is not None and host.get_network().get_connections(peer):
            # Still connected through another connection, but what was sent
            # on the dead one is lost: as good as a new connection (catch up).
            self._fire_on_connect(peer)
        elif outbound and addr is not None and peer not in self._bootstrap_peers:
            self._start_redial(peer, addr)

    def _start_redial(self, peer: ID, addr: str) -> None:
        nursery = self._nursery
        if nursery is None or peer in self._redialling:
            return
        self._redialling.add(peer)
        try:
            nursery.start_soon(self._redial, peer, addr)
        except RuntimeError:
            self._redialling.discard(peer)

    async def _redial(self, peer: ID, addr: str) -> None:
        """Redial a peer we lost to a dead connection, until it is back."""
        host = self._require_host()
        try:
            with trio.move_on_after(_REDIAL_FOR_S):
                while not host.get_network().get_connections(peer):
                    await trio.sleep(self._retry_in(peer))
                    if host.get_network().get_connections(peer):
                        return
                    with contextlib.suppress(PeerUnavailable):  # logged once
                        await self.connect(addr)
                return
            log.info("gave up redialling %s after %.0f s", peer, _REDIAL_FOR_S)
        finally:
            self._redialling.discard(peer)

    def _peer_disconnected(self, peer: ID) -> None:
        host = self._host
        if host is None or not host.get_network().get_connections(peer):
            self._connected.discard(peer)

    async def _call_on_connect(self, fn: Callable[[str], Awaitable[None]], peer: str) -> None:
        try:
            await fn(peer)
        except Exception:
            log.exception("on_connect callback failed for %s", peer)

    def _wrap_validator(
        self, topic: str, validator: Validator
    ) -> Callable[[ID, rpc_pb2.Message], Awaitable[bool]]:
        async def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            try:
                return bool(await validator(forwarder.to_base58(), msg.data))
            except Exception:
                # libp2p would swallow it too; log it so a validator bug shows.
                log.exception("gossip validator for %s raised; dropping the message", topic)
                return False

        return validate

    async def _read_topic(self, topic: str, state: _Topic, subscription: Any) -> None:
        with state.scope:
            async for msg in subscription:
                origin = ID(msg.from_id)
                if origin == self._id:
                    continue  # our own publish, looped back by libp2p (bug 2)
                mid = message_id(msg.data)
                if mid in state.delivered:
                    continue  # a copy that raced through validation (bug 1)
                state.delivered[mid] = None
                if len(state.delivered) > _DEDUP_WINDOW:
                    state.delivered.popitem(last=False)
                try:
                    await state.receiver(origin.to_base58(), msg.data)
                except Exception:
                    log.exception("receiver for %s failed on a message from %s", topic, origin)

    def _register_handler(self, host: IHost, protocol: str) -> None:
        async def serve(stream: INetStream) -> None:
            await self._serve(protocol, stream)

        host.set_stream_handler(TProtocol(protocol), serve)

    async def _serve(self, protocol: str, stream: INetStream) -> None:
        entry = self._handlers.get(protocol)
        peer = stream.muxed_conn.peer_id.to_base58()
        if entry is None:
            await _abort(stream)
            return
        handler, limit, timeout = entry
        with trio.move_on_after(timeout) as scope:
            try:
                request = await read_frame(stream, limit)
            except P2PError as exc:
                log.warning("%s from %s: refused request: %s", protocol, peer, exc)
                await _abort(stream)
                return
            except IOException as exc:
                log.info("%s from %s: stream failed before the request: %r", protocol, peer, exc)
                await _abort(stream)
                return
            try:
                response = await handler(peer, request)
            except Exception:
                log.exception("%s handler failed for a request from %s", protocol, peer)
                await _abort(stream)
                return
            if len(response) > self._max_frame_bytes:
                log.error(
                    "%s handler returned %d bytes, over max_frame_bytes; not sent",
                    protocol,
                    len(response),
                )
                await _abort(stream)
                return
            try:
                await stream.write(frame(response))
            except IOException as exc:
                log.info("%s to %s: could not send the response: %r", protocol, peer, exc)
                await _abort(stream)
                return
            await _close(stream)
        if scope.cancelled_caught:
            log.warning("%s from %s: timed out after %s s", protocol, peer, timeout)
            await _abort(stream)

    async def _keep_connected(self, addr: str) -> None:
        """Dial a bootstrap address and redial whenever the connection is gone.

        Failures back off (bug 22) and a down peer is logged once, at warning
        (by :meth:`connect`); a live connection is checked every second.
        """
        host = self._require_host()
        info = _parse_p2p_addr(addr)
        while True:
            if host.get_network().get_connections(info.peer_id):
                await trio.sleep(_CONNECTED_CHECK_S)
                continue
            await trio.sleep(self._retry_in(info.peer_id))
            with contextlib.suppress(PeerUnavailable):
                await self.connect(addr)
                log.info("connected to bootstrap peer %s", info.peer_id)
                # Not at once again if the peer drops us as soon as we come.
                await trio.sleep(_CONNECTED_CHECK_S)

    async def _run_mdns(self, host: IHost) -> None:
        """Announce ourselves on the LAN and dial the peers mDNS finds (bug 7)."""
        send, recv = trio.open_memory_channel[PeerInfo](_MDNS_CHANNEL_SIZE)
        token = trio.lowlevel.current_trio_token()

        def push(info: PeerInfo) -> None:
            # mDNS announces again, so dropping one when full is harmless.
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                send.send_nowait(info)

        def discovered(info: PeerInfo) -> None:
            # Called from zeroconf's thread, for every host in the process.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(push, info)

        addrs = self.listen_addrs
        try:
            port = int(host.get_transport_addrs()[0].value_for_protocol("tcp"))
            # Constructing only starts zeroconf's threads and browsers (a few ms).
            mdns = create_mdns_discovery(host.get_network(), port=port, listen_addrs=addrs)
        except Exception as exc:  # no multicast-capable interface, etc.
            log.warning("mDNS unavailable, continuing without it: %r", exc)
            return
        peerDiscovery.register_peer_discovered_handler(discovered)
        try:
            # register() blocks for zeroconf's ~1.6 s name probe: off the loop.
            await trio.to_thread.run_sync(mdns.broadcaster.register)
            log.info("mDNS: announcing %s", ", ".join(addrs))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sweep_mdns, mdns)
                await self._dial_discovered(host, recv)
        finally:
            peerDiscovery.unregister_peer_discovered_handler(discovered)
            with trio.CancelScope(shield=True):
                # Goodbye packet, browsers, zeroconf threads: ~0.25 s, blocking.
                await trio.to_thread.run_sync(mdns.stop)

    async def _sweep_mdns(self, mdns: MDNSDiscovery) -> None:
        # What MDNSDiscovery.start would run as a system task: forget
        # services not heard from in two TTLs.
        while True:
            await trio.sleep(mdns.cleanup_interval)
            mdns.listener.cleanup_stale_entries(max_age=mdns.ttl * 2)

    async def _dial_discovered(
        self, host: IHost, recv: trio.MemoryReceiveChannel[PeerInfo]
    ) -> None:
        async with recv:
            async for info in recv:
                if info.peer_id == self._id or host.get_network().get_connections(info.peer_id):
                    continue
                with trio.move_on_after(self._request_timeout_s):
                    try:
                        await host.connect(info)
                        log.info("connected to mDNS peer %s", info.peer_id)
                    except Exception as exc:
                        log.info("mDNS peer %s unreachable: %s", info.peer_id, exc)


_DNS_FAMILIES = {"dns": socket.AF_UNSPEC, "dns4": socket.AF_INET, "dns6": socket.AF_INET6}


async def _resolve_dns(info: PeerInfo) -> PeerInfo:
    """Turn ``/dns4|dns6|dns/<name>/tcp/<port>`` into IP multiaddrs (bug 13).

    py-libp2p's dialer does not resolve DNS multiaddrs (only its built-in
    bootstrap did), so a bootstrap line like ``/dns4/boot.example.org/...``
    would never connect.
    """
    resolved: list[multiaddr.Multiaddr] = []
    for addr in info.addrs:
        parts = str(addr).split("/")  # ["", "dns4", name, "tcp", port, ...]
        if len(parts) < 5 or parts[1] not in _DNS_FAMILIES:
            resolved.append(addr)
            continue
        name, rest = parts[2], "/".join(parts[3:])
        try:
            found = await trio.socket.getaddrinfo(
                name, int(parts[4]), family=_DNS_FAMILIES[parts[1]], type=socket.SOCK_STREAM
            )
        except (OSError, ValueError) as exc:
            raise PeerUnavailable(f"cannot resolve {name}: {exc}") from exc
        for family, _, _, _, sockaddr in found:
            proto = "ip4" if family == socket.AF_INET else "ip6"
            candidate = multiaddr.Multiaddr(f"/{proto}/{sockaddr[0]}/{rest}")
            if candidate not in resolved:
                resolved.append(candidate)
    return PeerInfo(info.peer_id, resolved)


async def _tame_dialling(network: INetwork) -> None:
    """Bug 22: two dialers of py-libp2p's swarm that defeat ours.

    The auto-connector dials every peer in the peerstore while the host has
    fewer than 50 connections (a federation always has), outside our
    backoff, and each failed TCP attempt of it logged an ERROR; we dial
    whom we mean to (bootstrap, mDNS, redials). And the negative peer cache
    refuses every dial to a peer for 60 s after one failed, so a validator
    back from a restart or a cut stayed unreachable for up to a minute
    whatever our backoff said. The first is stopped, the second gets a TTL
    of zero; :meth:`P2P._dial_failed` keeps the per-peer backoff instead.
    """
    connector = getattr(network, "auto_connector", None)
    if connector is not None:
        await connector.stop()
    cache = getattr(network, "_negative_peer_cache", None)
    if cache is not None and hasattr(cache, "_ttl"):
        cache._ttl = 0.0


async def _ping(conn: INetConn, timeout_s: float) -> None:
    """One libp2p ping round trip on this very connection (not any
    connection to the peer, which is what ``host.new_stream`` would pick)."""
    stream = await conn.new_stream()
    done = False
    try:
        # libp2p's negotiation timeout is whole seconds; ours (the caller's)
        # must fire first so that a timeout reads as silence, not an answer.
        protocol = await MultiselectClient().select_one_of(
            [PING_PROTOCOL], MultiselectCommunicator(stream), math.ceil(timeout_s) + 5
        )
        stream.set_protocol(protocol)
        await perform_ping_roundtrip(stream)
        done = True
    finally:
        await (_close(stream) if done else _abort(stream))


def _tcp_socket(conn: INetConn) -> trio.SocketStream | None:
    """The TCP socket under a libp2p connection (swarm conn -> yamux ->
    noise -> raw connection -> socket stream), or None for another transport."""
    layers: list[Any] = [conn]
    for _ in range(8):
        found: list[Any] = []
        for layer in layers:
            if isinstance(layer, trio.SocketStream):
                return layer
            for name in (
                "muxed_conn",
                "secured_conn",
                "conn",
                "read_writer",
                "read_write_closer",
                "stream",
            ):
                inner = getattr(layer, name, None)
                if inner is not None and inner is not layer:
                    found.append(inner)
        layers = found
    return None


async def _close_dead(conn: INetConn) -> None:
    """Close a connection that stopped answering, promptly.

    libp2p's close starts with a GO_AWAY frame, and on a dead connection
    with a full send buffer that write blocks for good, leaving the
    connection listed (measured: still there after 5 s). Nothing can reach
    the peer through it anyway, so the socket is closed first (blocked
    writes fail at once), then libp2p's close does its bookkeeping.
    """
    sock = _tcp_socket(conn)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.socket.close()
    with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT_S):
        try:
            await conn.close()
        except Exception:
            log.debug("closing a dead connection failed", exc_info=True)


def _reason(exc: BaseException) -> str:
    """The innermost cause of a dial failure, in one line."""
    while exc.__cause__ is not None and str(exc.__cause__):
        exc = exc.__cause__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _keep_addrs_through_close(host: IHost) -> None:
    """Quirk 21: once the host has closed its TCP listeners, ``get_addrs()``
    raises OSError (``getsockname`` on a closed socket); pubsub calls it for
    every message it sends (to sign our peer record), so a message forwarded
    while the node stops crashed the stop. The host's ``get_addrs`` answers
    with the last addresses it had instead."""
    real = host.get_addrs
    last: list[multiaddr.Multiaddr] = []

    def get_addrs() -> list[multiaddr.Multiaddr]:
        nonlocal last
        with contextlib.suppress(OSError):  # listeners closed while stopping
            last = real()
        return list(last)

    host.get_addrs = get_addrs  # type: ignore[method-assign]


def _expand_wildcards(addrs: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
    """Replace 0.0.0.0 / :: listen addresses by the interface addresses they cover."""
    out: list[multiaddr.Multiaddr] = []
    for addr in addrs:
        text = str(addr)
        wildcard = text.startswith(("/ip4/0.0.0.0/", "/ip6/::/"))
        for candidate in expand_wildcard_address(addr) if wildcard else [addr]:
            if candidate not in out:
                out.append(candidate)
    return out


async def _abort(stream: INetStream) -> None:
    # Shielded and bounded: cleanup must finish even while we are cancelled,
    # and must not hang on a dead connection.
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        try:
            await stream.reset()
        except Exception:
            log.debug("stream reset failed", exc_info=True)


async def _close(stream: INetStream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        try:
            await stream.close()
        except Exception:
            log.debug("stream close failed", exc_info=True)
