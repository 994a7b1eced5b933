"""Dynamic batcher: per-model bounded queue -> batches -> backend, in the backend's own
threads.

Each backend instance has a thread that takes its next batch from the queue itself as
soon as its last one is done. It hands results back once per batch: to the event loop,
which resolves the callers' futures, or, for requests queued with an `answer` (the
engine process), straight to it on the thread, once per batch and `answer`. The loop
never stands between one batch and the next. (The batcher before formed batches on the
event loop, so a finished instance waited for the loop to answer its batch's requests
and then to form and hand over the next. In the engine process at saturation this one
halved the time requests wait in the queue, 4.1-4.3 ms against 5.5-9.3 ms, for the same
throughput within the run's noise: hack/bench-runtime, docs/runtime.md, fourth round.)

Rules, chosen so that batching never costs latency it cannot buy back:
- A batch closes at `max_batch_size` rows, or when the queue holds nothing more that fits.
- Waiting for company happens only while at least one batch is already executing:
  waiting while the device sits idle would add latency at low load for no throughput;
  waiting while it is busy is free. The wait ends when `max_queue_delay` passes with no
  new arrival; while requests keep arriving, the next batch keeps filling until the
  running one is about to finish (by the measured duration of recent batches), so its
  host copies overlap the end of the running one. The wait ends at once if the device
  goes idle. One instance fills at a time; the others wait for it.
- Requests are taken in arrival order; a request whose non-batch dims differ from the
  batch being formed starts the next batch (no reordering, so no starvation).
- The queue is bounded (requests): when full, `Overloaded` (503 + Retry-After).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .errors import InferenceError, Overloaded, Unavailable

log = logging.getLogger("modelserve.batcher")

# The queue depth is reported with every batch and also every this many seconds from
# the event loop: a backend stuck on a batch must not freeze the gauge the autoscaler
# reads (modelserve_queue_depth). Per request it cost the engine's loop ~3 % of its time.
DEPTH_SAMPLE_S = 0.5


class BatchRunner(Protocol):
    instances: int

    def infer(self, batch: dict[str, list[np.ndarray]], rows: int) -> dict[str, np.ndarray]: ...


# How requests queued by `enqueue_many` get their results: on the thread that ran their
# batch, one call per batch and `answer`, with (token, outputs) for each of its requests in
# the batch (outputs None when the batch failed) and the batch's error. A backend failure
# is logged here, once per batch: the answers only pass it on.
Answer = Callable[[list[tuple[Any, dict[str, np.ndarray] | None]], BaseException | None], None]


@dataclass
class BatcherStats:
    """Hooks for metrics; the batcher itself knows nothing of Prometheus. Called once
    per batch (never per request), from the thread that ran it: they must be
    thread-safe, as prometheus_client's metrics are."""

    on_queue_depth: Callable[[int], None] = lambda depth: None
    on_batch: Callable[[int, float], None] = lambda rows, seconds: None
    # Per batch: the seconds its requests waited in the queue, summed, and how many
    # requests it holds.
    on_queue_wait: Callable[[float, int], None] = lambda seconds, requests: None


@dataclass
class _Item:
    inputs: dict[str, np.ndarray]
    rows: int
    signature: tuple
    future: asyncio.Future | None = field(repr=False)  # None: `answer` instead
    answer: Answer | None = field(repr=False)
    token: Any = None  # what `answer` is told the request by
    enqueued: float = 0.0  # monotonic
    inline: bool = True  # may run on the event loop (see Batcher._dispatch)
    company: bool = False  # more requests are on their way: worth waiting for (_fill)


@dataclass
class _Filling:
    """The batch an instance holds back for company: the rows that would fill it, its
    signature, and whether a request that cannot join it arrived (then it goes)."""

    need: int
    signature: tuple
    mismatch: bool = False


@dataclass
class _Done:
    """One batch's outcome: for its stats, its `answer` callers (on the batch's thread)
    and its callers' futures (resolved on the event loop)."""

    batch: list[_Item]
    results: list[dict[str, np.ndarray]] | None  # per item, in order; None on failure
    error: BaseException | None
    rows: int
    seconds: float  # the backend's time for the batch
    queue_wait: float  # summed over the batch's requests
    depth: int  # requests still queued when the batch was taken


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
        self.instances = max(1, backend.instances)
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_rows = 0
        # Guards the queue and the counts below; instance threads wait on it for work.
        self._cond = threading.Condition(threading.Lock())
        self._idle = 0  # instance threads waiting for a request
        self._started: list[float] = []  # monotonic start of each running batch
        self._filling: _Filling | None = None  # the batch waiting for company, if any
        self._dispatch_due = False  # _dispatch is scheduled
        self._arrivals = 0  # requests queued so far (a filling batch watches it move)
        # Exponentially weighted duration of recent batches (None until one has run).
        self.duration_estimate: float | None = None
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        return len(self._queue)

    def idle(self) -> bool:
        """Nothing queued and no batch running (read without the lock: a hint)."""
        return not self._queue and not self._started

    def start(self) -> None:
        """On the event loop: start one thread per backend instance."""
        self._loop = asyncio.get_running_loop()
        for i in range(self.instances):
            thread = threading.Thread(target=self._serve, name=f"infer_{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._sample_depth()

    def _sample_depth(self) -> None:
        if not self._closed:
            self.stats.on_queue_depth(len(self._queue))
            self._loop.call_later(DEPTH_SAMPLE_S, self._sample_depth)  # type: ignore[union-attr]

    async def submit(
        self, inputs: dict[str, np.ndarray], rows: int, inline: bool = True, company: bool = False
    ) -> dict[str, np.ndarray]:
        """Queue one request of `rows` rows; returns its slice of the batch outputs.
        `inline=False`: never run it on the event loop (see `_dispatch`).
        `company=True`: the caller knows more requests are on their way (see `_fill`)."""
        return await self.enqueue(inputs, rows, inline, company)

    def enqueue(
        self,
        inputs: dict[str, np.ndarray],
        rows: int,
        inline: bool = True,
        company: bool = False,
    ) -> asyncio.Future:
        """`submit` without a coroutine: the future of the request's outputs."""
        self._room_for(1)
        future = asyncio.get_running_loop().create_future()
        signature = signature_of(inputs)
        item = _Item(inputs, rows, signature, future, None, None, time.monotonic(), inline, company)
        self._arrive([item])
        return future

    def enqueue_many(
        self, requests: list[tuple[dict[str, np.ndarray], int, Any]], answer: Answer
    ) -> int:
        """Queue (inputs, rows, token) requests at once, with no futures: `answer` gets
        their results on the thread that runs their batch (see `Answer`; it must be
        thread-safe, quick, and not raise). The engine process queues each frame of a
        worker's requests so, under one lock, and answers a batch once per worker.
        Returns how many were queued, from the front; the rest found the queue full."""
        room = self._room_for(len(requests))
        now = time.monotonic()
        items = [
            _Item(inputs, rows, signature_of(inputs), None, answer, token, now)
            for inputs, rows, token in requests[:room]
        ]
        self._arrive(items)
        return len(items)

    def _room_for(self, wanted: int) -> int:
        """How many of `wanted` requests the queue takes now; raises if none."""
        if self._closed:
            raise Unavailable("the server is shutting down")
        room = min(wanted, self.max_queue_size - len(self._queue))
        if room <= 0:
            raise Overloaded(f"queue full ({self.max_queue_size} requests waiting); retry shortly")
        return room

    def _arrive(self, items: list[_Item]) -> None:
        """On the event loop: queue the items, then wake whoever they concern."""
        with self._cond:
            filling = self._filling
            for item in items:
                self._queue.append(item)
                self._queued_rows += item.rows
                if filling is not None and item.signature != filling.signature:
                    filling.mismatch = True
            self._arrivals += len(items)
            if filling is not None:
                if filling.mismatch or self._queued_rows >= filling.need:
                    self._cond.notify_all()
            elif (self._idle or self._could_run_inline()) and not self._dispatch_due:
                # An idle instance is woken after this event-loop turn, not now: the
                # requests that arrive in the same turn go as one batch (woken at once,
                # it took them one by one: one process on one core served 20-25 % fewer
                # requests at concurrency 64, hack/bench-runtime --cpu).
                self._dispatch_due = True
                self._loop.call_soon(self._dispatch)  # type: ignore[union-attr]

    def _could_run_inline(self) -> bool:
        """Lock held."""
        estimate = self.duration_estimate
        return (
            len(self._queue) == 1
            and self._queue[0].inline
            and not self._queue[0].company
            and not self._started
            and self._filling is None
            and estimate is not None
            and estimate < self.inline_below_s
        )

    def _dispatch(self) -> None:
        """After the event-loop turn in which requests found the device idle: wake an
        instance for them, or run a lone one here.

        A lone request on an idle device whose batches take less than
        `inline_below_s` runs on the event loop thread itself. At low load the instance
        thread is asleep, and waking it and then the loop cost more than blocking the
        loop for one short batch: on the H200 machine a hand-off to a sleeping thread and
        back took 330 us (27 us back to back; hack/probe-wakeups), and ResNet-50 batch-1
        p50 fell from 2.14 to 1.75 ms over HTTP, no change at concurrency 8 and 64."""
        with self._cond:
            self._dispatch_due = False
            if not self._could_run_inline():
                if self._queue and self._idle:
                    self._cond.notify()
                return
            item = self._queue.popleft()
            self._queued_rows -= item.rows
            mark = time.monotonic()
            self._started.append(mark)
        done = self._execute([item], mark)
        if item.future is not None:
            self._deliver(done)

    # --- instance threads ---------------------------------------------------------
    def _serve(self) -> None:
        while True:
            taken = self._next_batch()
            if taken is None:
                return
            done = self._execute(*taken)
            assert self._loop is not None
            if any(item.future is not None for item in done.batch):
                try:
                    self._loop.call_soon_threadsafe(self._deliver, done)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    return

    def _next_batch(self) -> tuple[list[_Item], float] | None:
        """Wait for requests, take a batch, mark it running (the mark is its start).
        None once closed and empty."""
        with self._cond:
            while True:
                while not self._queue or self._filling is not None:
                    if self._closed and not self._queue and self._filling is None:
                        return None
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                batch: list[_Item] = []
                rows = self._take_fitting(batch, 0)
                if batch and self._should_fill(batch, rows):
                    self._fill(batch, rows)
                if self._queue and self._idle:
                    self._cond.notify()  # what did not fit goes to the next idle instance
                if batch:  # else every queued caller had gone
                    mark = time.monotonic()
                    self._started.append(mark)
                    return batch, mark

    def _take_fitting(self, batch: list[_Item], rows: int) -> int:
        while self._queue:
            head = self._queue[0]
            if head.future is not None and head.future.cancelled():  # caller gone
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

    def _should_fill(self, batch: list[_Item], rows: int) -> bool:
        # Wait for company only while the device is busy anyway, or when the requests
        # say more are coming: gRPC calls reach the loop one at a time, so on an idle
        # device every call would otherwise go alone (batches of ~1.3 rows measured).
        return bool(
            self.delay > 0
            and (self._started or batch[-1].company)
            and self.batchable
            and rows < self.max_rows
            and not self._queue  # something queued that did not fit: close now
            and not self._closed
        )

    def _fill_wait_s(self) -> float:
        """How long a batch may wait for company: the delay, or until the oldest running
        batch has a fifth of its expected time left (never more than one batch time)."""
        wait = self.delay
        estimate = self.duration_estimate
        if estimate is not None and self._started:
            due = min(self._started) + 0.8 * estimate - time.monotonic()
            wait = max(wait, min(due, estimate))
        return wait

    def _fill(self, batch: list[_Item], rows: int) -> None:
        """Let the batch wait for company (lock held; `wait` releases it). It goes when
        arrivals complete it or cannot join it, when the device goes idle, at its
        deadline, or when `delay` passes with no arrival (under a closed-loop load
        everyone may already be waiting: waiting on for nobody would cost throughput).
        Arrivals wake it only when they complete it; the gap is checked once per delay."""
        filling = self._filling = _Filling(self.max_rows - rows, batch[0].signature)
        deadline = time.monotonic() + self._fill_wait_s()
        try:
            while not self._closed:
                seen = self._arrivals
                now = time.monotonic()
                if now >= deadline:
                    break
                self._cond.wait(min(self.delay, deadline - now))
                if filling.mismatch or self._queued_rows >= filling.need:
                    break
                if not self._started and not batch[-1].company:
                    break  # the device idles: go now
                if self._arrivals == seen:
                    break  # nobody came for a whole delay
        finally:
            self._filling = None
        self._take_fitting(batch, rows)

    def _execute(self, batch: list[_Item], mark: float) -> _Done:
        """Run one batch, marked running by the caller with `mark`; unmark it when done;
        report it and answer the callers that passed `answer`."""
        try:
            done = self._run_batch(batch)
        finally:
            with self._cond:
                self._started.remove(mark)
                if not self._started and self._filling is not None:
                    self._cond.notify_all()  # the device idles: the filling batch goes now
        self.stats.on_queue_depth(done.depth)
        self.stats.on_queue_wait(done.queue_wait, len(batch))
        if done.results is not None:
            self.stats.on_batch(done.rows, done.seconds)
        answers: dict[Answer, list[tuple[Any, dict[str, np.ndarray] | None]]] = {}
        for i, item in enumerate(batch):
            if item.answer is not None:
                result = None if done.results is None else done.results[i]
                answers.setdefault(item.answer, []).append((item.token, result))
        if answers and done.error is not None and not isinstance(done.error, InferenceError):
            # Futures raise the error in their callers, who log it; answers pass it on,
            # one call per worker in the engine process: logged here, once for all.
            log.error("inference failed", exc_info=done.error)
        for answer, answered in answers.items():
            try:
                answer(answered, done.error)
            except Exception:
                log.exception("answering a batch's requests failed")
        return done

    def _run_batch(self, batch: list[_Item]) -> _Done:
        started = time.monotonic()
        queue_wait = sum(started - item.enqueued for item in batch)
        depth = len(self._queue)
        rows = sum(item.rows for item in batch)
        # A batch's requests share their input names (signature_of). Built in a
        # comprehension so that no loop variable keeps the last input alive in this
        # frame, which a backend failure's traceback keeps (and the engine's arena views
        # must go when the batch does).
        chunks = {name: [item.inputs[name] for item in batch] for name in batch[0].inputs}
        try:
            outputs = self.backend.infer(chunks, rows)
        except Exception as exc:  # the backend failed: every caller gets the error
            return _Done(batch, None, exc, rows, time.monotonic() - started, queue_wait, depth)
        finally:
            # The inputs can be views of memory their owner unmaps once answered (the
            # engine process reads workers' shared-memory arenas: a view alive at unmap
            # is a BufferError); nothing needs them any more, so nothing keeps them.
            chunks.clear()
            for item in batch:
                item.inputs = {}
        seconds = time.monotonic() - started
        previous = self.duration_estimate
        self.duration_estimate = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        results, offset = [], 0
        for item in batch:  # each request's slice, cut here rather than on the loop
            end = offset + item.rows
            results.append({name: out[offset:end] for name, out in outputs.items()})
            offset = end
        return _Done(batch, results, None, rows, seconds, queue_wait, depth)

    # --- back on the event loop -----------------------------------------------------
    def _deliver(self, done: _Done) -> None:
        """Resolve the batch's futures (callers that passed `answer` have their result)."""
        for i, item in enumerate(done.batch):
            future = item.future
            if future is None or future.done():
                continue
            if done.results is None:
                future.set_exception(done.error)  # type: ignore[arg-type]
            else:
                future.set_result(done.results[i])

    async def close(self) -> None:
        """Stop taking requests; let queued and running batches finish."""
        self._closed = True
        with self._cond:
            self._cond.notify_all()
        while self._queue or self._started:
            await asyncio.sleep(0.01)
        for thread in self._threads:
            thread.join(timeout=5)
