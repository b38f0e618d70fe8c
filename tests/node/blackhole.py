"""A TCP proxy for tests that can black-hole traffic without closing anything.

A network cut does not close TCP connections: both ends keep them
"established" while the kernel retransmits with exponential backoff, so a
connection that lived through a long cut stays silent for minutes after the
network is back (7 backoffs after a 60 s cut). :class:`Blackhole` models
that on loopback, portably (no root, no network namespace):

- while cut, it forwards nothing and closes nothing: bytes stay in the
  kernel buffers, the writers block once those are full;
- every connection that was open during the cut (or accepted during it)
  stays frozen for good, as TCP's retransmission backoff would keep it for
  far longer than any test waits;
- connections accepted after :meth:`heal` forward normally, as new TCP
  connections after a heal do.
"""

from __future__ import annotations

from typing import Any

import trio

__all__ = ["Blackhole"]


class _Link:
    def __init__(self, frozen: bool) -> None:
        self.frozen = frozen


class Blackhole:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target_port``; :meth:`cut` and
    :meth:`heal` switch forwarding off and on."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._cut = False
        self._links: list[_Link] = []

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Stop forwarding; every open connection is frozen from now on."""
        self._cut = True
        for link in self._links:
            link.frozen = True

    def heal(self) -> None:
        """Forward new connections again (the frozen ones stay frozen)."""
        self._cut = False

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, client: trio.SocketStream) -> None:
        link = _Link(frozen=self._cut)
        self._links.append(link)
        try:
            async with client:
                if link.frozen:
                    await trio.sleep_forever()
                try:
                    server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
                except OSError:
                    return
                async with server, trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, server, link, nursery)
                    nursery.start_soon(self._pump, server, client, link, nursery)
        finally:
            self._links.remove(link)

    @staticmethod
    async def _pump(
        src: trio.SocketStream, dst: trio.SocketStream, link: _Link, nursery: trio.Nursery
    ) -> None:
        try:
            while True:
                if link.frozen:
                    await trio.sleep_forever()
                data = await src.receive_some(65536)
                if link.frozen:
                    await trio.sleep_forever()
                if not data:
                    await dst.send_eof()
                    return
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            nursery.cancel_scope.cancel()
