"""Busy-polling at low load (`--busy-poll-us`, off by default): an event loop that has
just served a lone request keeps polling its sockets without sleeping for a short
window, so the next frame or request is read at once instead of after an OS wake-up.

At concurrency 1 every hop of a request finds the process asleep, and waking a sleeping
process took ~0.1-0.15 ms on the H200 machines (hack/probe-wakeups). In engine mode a
request crosses three such hops (client -> worker, worker -> engine, engine -> worker):
with a 2 ms window uint8 ResNet-50 at c=1 answered in 1.02-1.03 ms p50 against
1.57-1.59 ms in the same run on an H200 machine (docs/runtime.md, Benchmark, seventh
round), for ~1.2 more cores busy; at c=64 it served as much as without.

Only a lone request kicks the window: an HTTP request that had the process to itself,
a worker's only request to the engine, a frame of one request reaching an idle engine.
Under load the loop is never idle anyway, and spinning would only take CPU (and the
engine's GIL) from the work that is there.

The window works by keeping a callback ready: while one is, the loop polls with a zero
timeout (asyncio and uvloop alike) instead of sleeping in epoll.
"""

from __future__ import annotations

import asyncio
import time


class BusyPoll:
    """One per process (`POLL`), set up with `configure` before serving."""

    def __init__(self) -> None:
        self.window_s = 0.0
        self.until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._spinning = False  # a _spin callback is scheduled on _loop
        self.spins = 0  # loop turns spent polling (tests)

    def configure(self, window_us: int) -> None:
        self.window_s = window_us / 1e6

    def kick(self) -> None:
        """On the event loop: keep it polling for the window from now."""
        if self.window_s <= 0:
            return
        self.until = time.monotonic() + self.window_s
        loop = asyncio.get_running_loop()
        if not self._spinning or loop is not self._loop:
            self._loop, self._spinning = loop, True
            loop.call_soon(self._spin)

    def _spin(self) -> None:
        if time.monotonic() < self.until:
            self.spins += 1
            self._loop.call_soon(self._spin)  # type: ignore[union-attr]
        else:
            self._spinning = False


POLL = BusyPoll()
