"""Length-prefixed framing over a byte stream, sans-IO.

Why this exists: every mycelia stream (``/mycelia/compute/1`` among them)
carries length-prefixed frames, and cutting a byte stream into frames must
not trust the peer's lengths nor depend on how the transport chunks the
bytes. This module is that cutting, with no I/O — the statement of the
format an implementation in another language follows (the test vectors'
``framed`` bytes are :func:`frame`'s): the caller feeds whatever bytes
arrived and takes out whole frames.

The format is the one every mycelia stream uses (``node/p2p.py`` reads the
same frames from a libp2p stream): an unsigned LEB128 varint length, then
that many bytes::

    frame = uvarint(len(payload)) || payload
    uvarint(n) = 7 bits at a time, least significant group first, the high
                 bit set on every byte but the last; minimal (no trailing
                 0x80 ... 0x00 padding), at most 10 bytes.

The reader refuses, without buffering a body:

* a length above its ``max_frame`` as soon as the prefix bytes read so far
  say so (``too_large``) — the peer cannot make it wait for a body it will
  refuse;
* a non-minimal length or one longer than 10 bytes (``non_canonical``:
  one encoding per length).

So an incomplete frame never holds more than ``max_frame + 10`` bytes. A
caller feeds bytes with :meth:`FrameReader.feed` and takes every complete
frame with :meth:`FrameReader.next_frame` until it returns None before it
reads more; :meth:`FrameReader.wanted` says how many bytes would complete
the next step, for a transport that reads exact sizes. An empty payload is
an ordinary frame, never an end marker; the end of the stream is the
transport's, and :meth:`FrameReader.end` refuses one that cuts a frame.
"""

from __future__ import annotations

from typing import NoReturn

from mycelia.protocol.reasons import Reason, Refused

__all__ = ["MAX_VARINT_BYTES", "FrameReader", "frame", "uvarint"]

MAX_VARINT_BYTES = 10


def uvarint(n: int) -> bytes:
    """The minimal unsigned LEB128 encoding of ``n``."""
    if n < 0:
        raise ValueError("a frame length is not negative")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """``payload`` with its length prefix."""
    return uvarint(len(payload)) + payload


class FrameReader:
    """Cuts fed bytes into frames of at most ``max_frame`` bytes. After a
    refusal the reader stays broken (every later call refuses the same way):
    a stream that lost its framing cannot be resynchronised."""

    __slots__ = ("_broken", "_buffer", "max_frame")

    def __init__(self, max_frame: int) -> None:
        if max_frame < 0:
            raise ValueError("max_frame is not negative")
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._broken: Refused | None = None

    def feed(self, data: bytes) -> None:
        if self._broken is not None:
            raise self._broken
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next complete frame's payload, or None if more bytes are needed."""
        if self._broken is not None:
            raise self._broken
        header = self._header()
        if header is None:
            return None
        size, length = header
        end = size + length
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[size:end])
        del self._buffer[:end]
        return payload

    def wanted(self) -> int:
        """How many more bytes the next step needs (at least 1): one more
        prefix byte, or the rest of the body."""
        if self._broken is not None:
            raise self._broken
        header = self._header()
        if header is None:
            return 1
        size, length = header
        return max(1, size + length - len(self._buffer))

    def end(self) -> None:
        """The stream ended: refuse (``malformed``) if it ended inside a frame."""
        if self._broken is not None:
            raise self._broken
        if self._buffer:
            self._break(Refused(Reason.MALFORMED, "the stream ended inside a frame"))

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _header(self) -> tuple[int, int] | None:
        """(prefix size, payload length) once the prefix is complete."""
        length = 0
        buf = self._buffer
        for i in range(min(len(buf), MAX_VARINT_BYTES)):
            byte = buf[i]
            length |= (byte & 0x7F) << (7 * i)
            if length > self.max_frame:
                self._break(
                    Refused(Reason.TOO_LARGE, f"a frame of more than {self.max_frame} bytes")
                )
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    self._break(Refused(Reason.NON_CANONICAL, "non-minimal varint length"))
                return i + 1, length
        if len(buf) >= MAX_VARINT_BYTES:
            self._break(Refused(Reason.NON_CANONICAL, "varint length longer than 10 bytes"))
        return None

    def _break(self, refusal: Refused) -> NoReturn:
        self._broken = refusal
        self._buffer.clear()
        raise refusal
