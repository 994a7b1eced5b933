"""The engine<->worker wire: length-prefixed pickle frames over a stream socket.

Both ends are our own processes, so pickle is safe and cheap. `FrameLink` is a plain
asyncio protocol rather than stream coroutines: frames written in one event-loop turn
leave as one send, and every whole frame in a read is handled at once. On the engine's
event loop, the one thread every request crosses, stream coroutines and a task per
request cost more than the frames themselves.
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


def frame(obj: Any) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(payload)) + payload


class FrameLink(asyncio.Protocol):
    """Length-prefixed pickle frames over a stream socket, both ways."""

    def __init__(
        self,
        on_frame: Callable[[Any], None],
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.on_frame = on_frame
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox = bytearray()
        self._outbox: list[bytes] = []
        self._lock = threading.Lock()  # the outbox: send_threadsafe appends from threads

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
                self.on_frame(pickle.loads(inbox[start:pos]))
            except Exception:  # one bad frame must not take the link down
                log.exception("failed to handle a frame")
        if pos:
            del inbox[:pos]

    def send(self, obj: Any) -> None:
        """On the event loop."""
        if self._queue(frame(obj)):
            asyncio.get_running_loop().call_soon(self._flush)

    def send_threadsafe(self, obj: Any) -> None:
        """From any thread: pickled here, written by the event loop, which is woken once
        for all the frames sent before it flushes."""
        if self._queue(frame(obj)) and self._loop is not None:
            # RuntimeError: the loop is closed, and the link is gone with it.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._flush)

    def _queue(self, data: bytes) -> bool:
        """Into the outbox; True when a flush must be scheduled (the first frame since
        the last flush, on a connected link)."""
        with self._lock:
            first = not self._outbox
            self._outbox.append(data)
        return first and self.transport is not None

    def _flush(self) -> None:
        if self.transport is None:
            return
        with self._lock:
            frames, self._outbox = self._outbox, []
        if frames and not self.transport.is_closing():
            self.transport.write(b"".join(frames))

    def close(self) -> None:
        if self._outbox:
            self._flush()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_lost()
