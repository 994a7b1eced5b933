"""The engine<->worker wire: length-prefixed pickle frames over a stream socket, each
frame a list of messages.

Both ends are our own processes, so pickle is safe and cheap. `FrameLink` is a plain
asyncio protocol rather than stream coroutines. Everything sent in one event-loop turn
(or, from threads, before the loop next flushes) leaves as one frame holding a list, so
the peer unpickles once however many requests or answers it holds: at saturation a
worker sends its requests ~7 at a time and the engine answers a batch's ~100 requests in
one frame per worker. On the engine's event loop, the one thread every request crosses,
a pickle, a task or a stream coroutine per request cost more than the requests' own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import struct
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("modelserve.wire")

LENGTH = struct.Struct("<I")


def frame(messages: list[Any]) -> bytes:
    payload = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(payload)) + payload


class FrameLink(asyncio.Protocol):
    """Lists of messages in length-prefixed pickle frames over a stream socket, both ways.
    `on_messages` gets each frame's list."""

    def __init__(
        self,
        on_messages: Callable[[list[Any]], None],
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.on_messages = on_messages
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox = bytearray()
        self._outbox: list[Any] = []
        self._lock = threading.Lock()  # the outbox: send_threadsafe extends it from threads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        if self._outbox:  # sent before the transport existed (the engine's greeting)
            self._flush()

    def data_received(self, data: bytes) -> None:
        inbox = self._inbox
        inbox += data
        pos, end = 0, len(inbox)
        while end - pos >= LENGTH.size:
            (length,) = LENGTH.unpack_from(inbox, pos)
            if end - pos - LENGTH.size < length:
                break
            start = pos + LENGTH.size
            pos = start + length
            try:
                self.on_messages(pickle.loads(inbox[start:pos]))
            except Exception:  # one bad frame must not take the link down
                log.exception("failed to handle a frame")
        if pos:
            del inbox[:pos]

    def send(self, *messages: Any) -> None:
        """On the event loop: into the frame that leaves at the end of this turn."""
        if self._queue(messages):
            asyncio.get_running_loop().call_soon(self._flush)

    def send_threadsafe(self, *messages: Any) -> None:
        """From any thread: the event loop, woken once for everything sent before it
        flushes, pickles and writes it."""
        if self._queue(messages) and self._loop is not None:
            # RuntimeError: the loop is closed, and the link is gone with it.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._flush)

    def _queue(self, messages: tuple[Any, ...]) -> bool:
        """Into the outbox; True when a flush must be scheduled (the first messages
        since the last flush, on a connected link)."""
        with self._lock:
            first = not self._outbox
            self._outbox.extend(messages)
        return first and self.transport is not None

    def _flush(self) -> None:
        if self.transport is None:
            return
        with self._lock:
            messages, self._outbox = self._outbox, []
        if messages and not self.transport.is_closing():
            self.transport.write(frame(messages))

    def close(self) -> None:
        if self._outbox:
            self._flush()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_lost()
