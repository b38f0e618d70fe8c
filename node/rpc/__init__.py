"""The wallet RPC: JSON-RPC 2.0 over HTTP and WebSocket (docs/rpc.md).

Why this exists: wallets, the ``mycelia`` CLI and scripts need the node's
state and a way to submit signed entries, without speaking libp2p or
msgpack. This package is only a translator: every validity and balance rule
stays in ``protocol/``, and the contract (params, results, errors, the
OpenRPC document) in ``mycelia.api``; a handler gets the params its
declaration parsed, calls the node-internal API (``Node.submit``,
``Node.add_economy``, the store's readers) and returns the API value its
declaration names, which the dispatcher writes. A protocol refusal
(:class:`Refused`) becomes ``-32001`` with its reason; nothing refused
changes anything stored, because refusals happen before the node stores.

How it works:

Modules: ``methods`` (a handler per declared method, :data:`REGISTRY`),
``hub`` (subscriptions), ``server`` (auth, limits, HTTP and WebSocket, the
datadir files, :func:`serve_rpc`); the HTTP serving machinery they share
with the ingest and metrics is ``node/http.py``.

* The methods are declared in ``mycelia.api.methods``, each with its
  params' schemas and parsers and its result type; :data:`REGISTRY` binds a
  handler to every one (``jsonrpc.py`` holds the generic machinery: request
  validation, batches, error objects), so ``rpc.discover`` documents
  exactly what is accepted and answered.
* Transport: a Starlette app (``POST /``, WebSocket ``/ws``) behind one
  ASGI guard that checks the cookie (401 with ``WWW-Authenticate`` and an
  empty body, also for a WebSocket handshake, through the ASGI denial
  response) and the connection limit, before any route runs. Hypercorn's
  trio connection handler speaks HTTP/1.1 and WebSocket; :func:`serve_rpc`
  binds the sockets itself and serves them through ``http.Listener``.
  Why not ``hypercorn.trio.serve``: hypercorn shields every socket write
  from cancellation, so one client that stops reading would block its
  connection task — and the clean stop — forever. Binding ourselves lets
  every write give up after ``send_timeout_s`` (``http.Stream``), closes
  every connection at once at stop, makes the unix socket 0600 before it
  listens (no umask games), and reports the real port for port 0.
* Slow and idle clients (docs/rpc.md, "Limits"): each costs a connection
  task and perhaps one of ``rpc.max_connections``, so each is bounded in
  time — headers within ``rpc.header_timeout_s`` (hypercorn's keep-alive
  timer, which runs until a request's headers are complete), a body within
  ``rpc.body_timeout_s`` (``http.read_body``: 408), a WebSocket without
  subscriptions closed after ``rpc.ws_idle_timeout_s`` without a message —
  and in number: a :class:`Gate` at accept caps TCP connections from
  addresses other than loopback (in all and per address), and the guard
  keeps ``rpc.unix_reserve`` slots that only the unix socket may take, so
  slow or idle TCP clients cannot lock the local wallet out. The sensor
  ingest is served by the same machinery (:func:`serve_http`) with its
  own caps.
* Subscriptions (WebSocket only): :class:`Hub` listens to the applier
  (every applied certificate: which subscribed accounts it touched), to
  the submitter (entry statuses) and to the fork monitor (new fork
  evidence, ``forks.py``), all synchronous callbacks on the trio thread
  that must never block. So each connection (:class:`Session`) has a
  bounded outbox drained by its own writer task; a notification that finds
  the outbox full closes that connection (code 1008) instead of waiting: a
  slow client loses its connection, the node loses nothing. Notifications
  raised while a message is being answered wait until its response is
  queued, so a client always learns a subscription id before its first
  notification.
* Files in the datadir: ``.cookie`` (0600, new at every start), ``rpc.sock``
  (0600) and ``rpc.endpoint`` (the addresses actually bound); all removed at
  a clean stop.

Structured concurrency: :func:`serve_rpc` owns one nursery holding the
listeners and every connection's tasks (hypercorn's included); each
WebSocket's reader and writer live in that connection's own nursery.
"""

from mycelia.node.rpc.hub import Hub, Session, Subscription
from mycelia.node.rpc.methods import REGISTRY, Api, openrpc_document, translate
from mycelia.node.rpc.server import RpcEndpoints, RpcServer, rpc_gate, serve_rpc
from mycelia.node.views import status_view

__all__ = [
    "REGISTRY",
    "Api",
    "Hub",
    "RpcEndpoints",
    "RpcServer",
    "Session",
    "Subscription",
    "openrpc_document",
    "rpc_gate",
    "serve_rpc",
    "status_view",
    "translate",
]
