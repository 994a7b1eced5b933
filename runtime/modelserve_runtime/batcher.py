"""Dynamic batcher: per-model bounded queue -> batches -> backend, off the event loop.

Rules, chosen so that batching never costs latency it cannot buy back:
- A batch closes at `max_batch_size` rows, or when the queue holds nothing more that fits.
- Waiting for company happens only while at least one batch is already executing:
  waiting while the device sits idle would add latency at low load for no throughput;
  waiting while it is busy is free. The wait ends when `max_queue_delay` passes with no
  new arrival; while requests keep arriving, the next batch keeps filling until the
  running one is about to finish (by the measured duration of recent batches), so its
  host copies overlap the end of the running one. Two half-full batches on a busy GPU
  cost more than one full one (hack/bench-runtime: ResNet-50 and BERT settled at half
  the maximum batch under saturation). The wait ends at once if the device goes idle.
- Requests are taken in arrival order; a request whose non-batch dims differ from the
  batch being formed starts the next batch (no reordering, so no starvation).
- The queue is bounded (requests): when full, `Overloaded` (503 + Retry-After).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .errors import Overloaded, Unavailable


class BatchRunner(Protocol):
    instances: int

    def infer(self, batch: dict[str, list[np.ndarray]], rows: int) -> dict[str, np.ndarray]: ...


@dataclass
class BatcherStats:
    """Hooks for metrics; the batcher itself knows nothing of Prometheus."""

    on_queue_depth: Callable[[int], None] = lambda depth: None
    on_batch: Callable[[int, float], None] = lambda rows, seconds: None
    # Per batch: the seconds its requests waited in the queue, summed, and how many
    # requests it holds (once per batch, not per request: it runs on the busiest thread).
    on_queue_wait: Callable[[float, int], None] = lambda seconds, requests: None


@dataclass
class _Item:
    inputs: dict[str, np.ndarray]
    rows: int
    signature: tuple
    future: asyncio.Future = field(repr=False)
    enqueued: float = 0.0  # monotonic
    inline: bool = True  # may run on the event loop (see Batcher._run_inline)
    company: bool = False  # more requests are on their way: worth waiting for (_form_batch)


@dataclass
class _Filling:
    """A formed batch waiting for company: woken by arrivals that complete it (or cannot
    join it), by the device going idle, by its deadline, or when `gap` passes with no
    arrival (under a closed-loop load everyone may already be waiting: waiting on for
    nobody would cost throughput). One timer tick per gap, not a wake-up per arrival:
    the wait shares the event loop with every request's HTTP handling."""

    need: int  # queued rows that would fill it
    signature: tuple
    waiter: asyncio.Future
    deadline: float  # monotonic
    gap: float
    arrivals: int = 0
    _seen: int = -1

    def wake(self) -> None:
        if not self.waiter.done():
            self.waiter.set_result(None)

    def tick(self) -> None:
        now = time.monotonic()
        if self.waiter.done():
            return
        if now >= self.deadline or self.arrivals == self._seen:
            self.wake()
            return
        self._seen = self.arrivals
        asyncio.get_running_loop().call_later(min(self.gap, self.deadline - now), self.tick)


def signature_of(inputs: dict[str, np.ndarray]) -> tuple:
    # Requests batch together only if everything but dim 0 matches.
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items()))


class Batcher:
    def __init__(
        self,
        backend: BatchRunner,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_size: int,
        batchable: bool = True,
        stats: BatcherStats | None = None,
        inline_below_s: float = 0.0,
    ) -> None:
        self.backend = backend
        self.max_rows = max_batch_size if batchable else 1
        self.batchable = batchable
        self.delay = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self.stats = stats or BatcherStats()
        self.inline_below_s = inline_below_s
        self.slots = max(1, backend.instances)
        self._queue: collections.deque[_Item] = collections.deque()
        self._arrived = asyncio.Event()
        self._free = asyncio.Semaphore(self.slots)
        self._started: list[float] = []  # monotonic start of each running batch
        self._queued_rows = 0
        self._filling: _Filling | None = None  # the batch waiting for company, if any
        # Exponentially weighted duration of recent batches (None until one has run).
        self.duration_estimate: float | None = None
        self._executor = ThreadPoolExecutor(self.slots, thread_name_prefix="infer")
        self._task: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()
        self._closed = False

    @property
    def _running(self) -> int:
        return len(self._started)

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def submit(
        self, inputs: dict[str, np.ndarray], rows: int, inline: bool = True, company: bool = False
    ) -> dict[str, np.ndarray]:
        """Queue one request of `rows` rows; returns its slice of the batch outputs.
        `inline=False`: never run it on the event loop (see `_run_inline`).
        `company=True`: the caller knows more requests are on their way (see `_form_batch`)."""
        return await self.enqueue(inputs, rows, inline, company)

    def enqueue(
        self,
        inputs: dict[str, np.ndarray],
        rows: int,
        inline: bool = True,
        company: bool = False,
    ) -> asyncio.Future:
        """`submit` without a coroutine: the engine process answers from the future's
        callback, which saves a task per request on its busiest thread."""
        if self._closed:
            raise Unavailable("the server is shutting down")
        if len(self._queue) >= self.max_queue_size:
            raise Overloaded(f"queue full ({self.max_queue_size} requests waiting); retry shortly")
        future = asyncio.get_running_loop().create_future()
        item = _Item(inputs, rows, signature_of(inputs), future, time.monotonic(), inline, company)
        self._queue.append(item)
        self._queued_rows += rows
        self.stats.on_queue_depth(len(self._queue))
        self._arrived.set()
        filling = self._filling
        if filling is not None:
            filling.arrivals += 1
            if self._queued_rows >= filling.need or item.signature != filling.signature:
                filling.wake()
        return future

    async def _loop(self) -> None:
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            await self._free.acquire()
            batch = await self._form_batch()
            if not batch:
                self._free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
            # Not kept while waiting for the next request: the requests' inputs can be
            # views of memory their owner unmaps once answered (the engine process reads
            # workers' shared-memory arenas: a view alive at unmap is a BufferError).
            del batch, task

    def _take_fitting(self, batch: list[_Item], rows: int) -> int:
        while self._queue:
            head = self._queue[0]
            if head.future.cancelled():  # caller gone (client disconnected)
                self._queue.popleft()
                self._queued_rows -= head.rows
                continue
            if batch and (head.signature != batch[0].signature or rows + head.rows > self.max_rows):
                break
            batch.append(self._queue.popleft())
            self._queued_rows -= head.rows
            rows += head.rows
            if not self.batchable or rows >= self.max_rows:
                break
        return rows

    def _fill_wait_s(self) -> float:
        """How long a batch may wait for company: the delay, or until the oldest running
        batch has a fifth of its expected time left (never more than one batch time)."""
        wait = self.delay
        estimate = self.duration_estimate
        if estimate is not None and self._started:
            due = min(self._started) + 0.8 * estimate - time.monotonic()
            wait = max(wait, min(due, estimate))
        return wait

    async def _form_batch(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = self._take_fitting(batch, 0)
        # Wait for company only while the device is busy anyway, or when the requests
        # say more are coming: gRPC calls reach the loop one at a time, so on an idle
        # device every call would otherwise go alone (batches of ~1.3 rows measured).
        if (
            batch
            and self.delay > 0
            and (self._running > 0 or batch[-1].company)
            and self.batchable
            and rows < self.max_rows
            and not self._queue  # something queued that did not fit: close now
        ):
            loop = asyncio.get_running_loop()
            filling = _Filling(
                need=self.max_rows - rows,
                signature=batch[0].signature,
                waiter=loop.create_future(),
                deadline=time.monotonic() + self._fill_wait_s(),
                gap=self.delay,
            )
            self._filling = filling
            filling.tick()
            try:
                await filling.waiter
            finally:
                self._filling = None
            self._take_fitting(batch, rows)
        self.stats.on_queue_depth(len(self._queue))
        return batch

    def _run_inline(self, batch: list[_Item]) -> bool:
        """A lone one-request batch on an idle device whose batches take less than
        `inline_below_s` runs on the event loop thread itself. At low load the worker
        thread is asleep, and waking it and then the loop cost more than blocking the
        loop for one short batch: on the H200 machine a hand-off to a sleeping thread and
        back took 330 us (27 us back to back; hack/probe-wakeups), and ResNet-50 batch-1
        p50 fell from 2.14 to 1.75 ms over HTTP, no change at concurrency 8 and 64."""
        estimate = self.duration_estimate
        return (
            len(batch) == 1
            and batch[0].inline
            and self._running == 1
            and not self._queue
            and estimate is not None
            and estimate < self.inline_below_s
        )

    async def _run(self, batch: list[_Item]) -> None:
        started = time.monotonic()
        self._started.append(started)
        try:
            self.stats.on_queue_wait(sum(started - item.enqueued for item in batch), len(batch))
            rows = sum(item.rows for item in batch)
            chunks: dict[str, list[np.ndarray]] = {name: [] for name in batch[0].inputs}
            for item in batch:
                for name, array in item.inputs.items():
                    chunks[name].append(array)
            loop = asyncio.get_running_loop()
            try:
                if self._run_inline(batch):
                    outputs = self.backend.infer(chunks, rows)
                else:
                    outputs = await loop.run_in_executor(
                        self._executor, self.backend.infer, chunks, rows
                    )
            except Exception as exc:  # the backend failed: every caller gets the error
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                return
            seconds = time.monotonic() - started
            previous = self.duration_estimate
            self.duration_estimate = seconds if previous is None else 0.8 * previous + 0.2 * seconds
            self.stats.on_batch(rows, seconds)
            offset = 0
            for item in batch:
                if not item.future.done():
                    item.future.set_result(
                        {name: out[offset : offset + item.rows] for name, out in outputs.items()}
                    )
                offset += item.rows
        finally:
            self._started.remove(started)
            self._free.release()
            if self._running == 0 and self._filling is not None:
                self._filling.wake()  # the device idles: the filling batch goes now

    async def close(self) -> None:
        """Stop taking requests; let queued and running batches finish."""
        self._closed = True
        if self._filling is not None:
            self._filling.wake()
        while self._queue or self._running:
            await asyncio.sleep(0.01)
        if self._task:
            self._task.cancel()
        self._executor.shutdown(wait=True)
