"""A de-duplicating work queue: each key is reconciled by one worker at a time.

Watch events arrive in bursts (a Deployment's status changes several times while pods
start). Enqueuing a key already waiting is a no-op, and a key enqueued while it is being
reconciled runs once more afterwards, so every reconcile sees the latest state and no
two run for the same object at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

from modelserve_operator.controllers.cluster import metrics

log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self, work: Callable[[Hashable], Awaitable[float | None]], workers: int = 16):
        self._work = work
        self._workers = workers
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._waiting: set[Hashable] = set()
        self._running: set[Hashable] = set()
        self._again: set[Hashable] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()

    def add(self, key: Hashable) -> None:
        if key in self._running:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)
            metrics.QUEUE_DEPTH.set(len(self._waiting))

    def add_after(self, key: Hashable, delay: float) -> None:
        """Reconcile `key` again after `delay` seconds (keeps the earliest request)."""
        loop = asyncio.get_running_loop()
        timer = self._timers.get(key)
        if timer and timer.when() <= loop.time() + delay:
            return
        if timer:
            timer.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def idle(self) -> bool:
        return not self._waiting and not self._running

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._waiting.discard(key)
            self._running.add(key)
            metrics.QUEUE_DEPTH.set(len(self._waiting))
            requeue: float | None = None
            try:
                requeue = await self._work(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # the reconcile logs and counts its own errors
                log.exception("reconcile of %s crashed; retrying in 5s", key)
                requeue = 5.0
            finally:
                self._running.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.add(key)
            elif requeue is not None:
                self.add_after(key, requeue)


class Backoff:
    """Per-object exponential backoff for failed reconciles (client-go's item rate limiter).

    One object that keeps failing (a webhook rejecting it, RBAC missing for its kind) is
    retried ever more slowly, up to `ceiling`, without slowing any other object; its
    first success forgets its failures.
    """

    def __init__(self, ceiling: float = 300.0):
        self.ceiling = ceiling
        self._failures: dict[Hashable, int] = {}

    def failed(self, key: Hashable, first: float = 1.0) -> float:
        """Seconds to wait before retrying `key`: first, twice that, four times …"""
        count = self._failures.get(key, 0)
        self._failures[key] = count + 1
        return min(self.ceiling, first * 2.0 ** min(count, 30))

    def succeeded(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)
