"""Dynamic batcher: batching, splitting, bounded queue, failures, filling, inline runs.
No timed assertions: a gate (threading.Event) holds the fake backend so the queue state
is deterministic. The filling tests rely only on wide margins (arrivals 10 ms apart
against a 200 ms gap; hour-long waits that only the rule under test can cut short)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from modelserve_runtime.batcher import Batcher, BatcherStats
from modelserve_runtime.errors import Overloaded


class FakeBackend:
    def __init__(self, instances: int = 1) -> None:
        self.instances = instances
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail = False
        self.calls = 0

    def infer(self, batch: dict[str, list[np.ndarray]], rows: int) -> dict[str, np.ndarray]:
        self.calls += 1
        self.entered.set()
        self.gate.wait()
        if self.fail:
            raise RuntimeError("device on fire")
        x = np.concatenate(batch["x"])
        assert x.shape[0] == rows
        self.batches.append(rows)
        return {"y": x * 2}


def rows(n: int, start: float = 0, width: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.full((n, width), start, dtype=np.float32)}


async def wait_entered(backend: FakeBackend) -> None:
    while not backend.entered.is_set():
        await asyncio.sleep(0.001)


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.005)


async def busy_device(max_batch: int, delay_s: float) -> tuple[FakeBackend, Batcher, asyncio.Task]:
    """Two instances, one one-row batch held at the gate (the device is busy), and recent
    batches said to have taken an hour: the setting in which a next batch fills."""
    backend = FakeBackend(instances=2)
    batcher = Batcher(backend, max_batch_size=max_batch, max_queue_delay_s=delay_s,
                      max_queue_size=64)
    batcher.start()
    batcher.duration_estimate = 3600.0
    backend.gate.clear()
    busy = asyncio.create_task(batcher.submit(rows(1), 1))
    await wait_entered(backend)
    return backend, batcher, busy


async def one_batch_held(
    max_batch: int = 8, max_queue_size: int = 100
) -> tuple[FakeBackend, Batcher, asyncio.Task]:
    """One instance, no fill delay, and a one-row batch held at the gate: what is
    submitted next queues behind it."""
    backend = FakeBackend()
    batcher = Batcher(
        backend, max_batch_size=max_batch, max_queue_delay_s=0, max_queue_size=max_queue_size
    )
    batcher.start()
    backend.gate.clear()
    first = asyncio.create_task(batcher.submit(rows(1), 1))
    await wait_entered(backend)
    return backend, batcher, first


def run(coro):
    return asyncio.run(coro)


def test_requests_queued_while_busy_form_one_batch_and_split_back() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        batcher = Batcher(backend, max_batch_size=8, max_queue_delay_s=0, max_queue_size=100)
        batcher.start()
        backend.gate.clear()
        first = asyncio.create_task(batcher.submit(rows(1, 1), 1))
        await wait_entered(backend)  # first batch is running, the rest must queue
        others = [asyncio.create_task(batcher.submit(rows(n, n), n)) for n in (1, 2, 3)]
        while batcher.depth < 3:
            await asyncio.sleep(0.001)
        backend.gate.set()
        results = await asyncio.gather(first, *others)
        assert backend.batches == [1, 6]
        for n, result in zip((1, 1, 2, 3), results, strict=True):
            assert result["y"].shape == (n, 2)
        np.testing.assert_array_equal(results[3]["y"], np.full((3, 2), 6.0))
        await batcher.close()

    run(scenario())


def test_batch_never_exceeds_max_and_keeps_order() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        batcher = Batcher(backend, max_batch_size=4, max_queue_delay_s=0, max_queue_size=100)
        batcher.start()
        backend.gate.clear()
        tasks = [asyncio.create_task(batcher.submit(rows(n), n)) for n in (3, 3, 1, 4, 2)]
        await wait_entered(backend)
        while batcher.depth < 4:
            await asyncio.sleep(0.001)
        backend.gate.set()
        await asyncio.gather(*tasks)
        assert backend.batches == [3, 4, 4, 2]  # 3 | 3+1 | 4 | 2: FIFO, never over 4
        await batcher.close()

    run(scenario())


def test_different_non_batch_shapes_do_not_mix() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        batcher = Batcher(backend, max_batch_size=8, max_queue_delay_s=0, max_queue_size=100)
        batcher.start()
        backend.gate.clear()
        tasks = [asyncio.create_task(batcher.submit(rows(1), 1))]
        await wait_entered(backend)
        tasks += [asyncio.create_task(batcher.submit(rows(1, width=w), 1)) for w in (2, 2, 5, 2)]
        while batcher.depth < 4:
            await asyncio.sleep(0.001)
        backend.gate.set()
        await asyncio.gather(*tasks)
        assert backend.batches == [1, 2, 1, 1]
        await batcher.close()

    run(scenario())


def test_full_queue_is_overloaded_not_unbounded() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        batcher = Batcher(backend, max_batch_size=1, max_queue_delay_s=0, max_queue_size=2)
        batcher.start()
        backend.gate.clear()
        running = asyncio.create_task(batcher.submit(rows(1), 1))
        await wait_entered(backend)
        queued = [asyncio.create_task(batcher.submit(rows(1), 1)) for _ in range(2)]
        while batcher.depth < 2:
            await asyncio.sleep(0.001)
        with pytest.raises(Overloaded, match="queue full"):
            await batcher.submit(rows(1), 1)
        backend.gate.set()
        await asyncio.gather(running, *queued)
        await batcher.close()

    run(scenario())


def test_backend_failure_reaches_every_caller_and_batcher_survives() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        batcher = Batcher(backend, max_batch_size=4, max_queue_delay_s=0, max_queue_size=10)
        batcher.start()
        backend.fail = True
        with pytest.raises(RuntimeError, match="on fire"):
            await batcher.submit(rows(1), 1)
        backend.fail = False
        result = await batcher.submit(rows(2, 1), 2)
        np.testing.assert_array_equal(result["y"], np.full((2, 2), 2.0))
        await batcher.close()

    run(scenario())


def test_delay_timer_waits_for_company_only_while_busy() -> None:
    async def scenario() -> None:
        backend = FakeBackend(instances=2)
        # A long delay: if the timer ran while idle this test would hang, not just slow.
        batcher = Batcher(backend, max_batch_size=4, max_queue_delay_s=3600, max_queue_size=10)
        batcher.start()
        result = await batcher.submit(rows(1), 1)  # idle device: dispatched at once
        assert result["y"].shape == (1, 2)
        backend.gate.clear()
        backend.entered.clear()
        busy = asyncio.create_task(batcher.submit(rows(1), 1))
        await wait_entered(backend)
        # Device busy: the second instance waits for the batch to fill up to 4 rows, and
        # runs it then (the first batch is still held at the gate).
        tasks = [asyncio.create_task(batcher.submit(rows(1), 1)) for _ in range(4)]
        await asyncio.wait_for(_until(lambda: backend.calls == 3), 30)
        backend.gate.set()
        await asyncio.gather(busy, *tasks)
        # Two slots finish in either order; what matters is that the four formed one batch.
        assert sorted(backend.batches) == [1, 1, 4]
        await batcher.close()

    run(scenario())


def test_busy_device_next_batch_fills_while_requests_keep_coming() -> None:
    async def scenario() -> None:
        # Stragglers arrive every 10 ms for 0.3 s: more than the 0.2 s delay in all, but
        # never 0.2 s apart. A fixed delay would cut the batch; the running batch's
        # long expected duration lets it fill.
        backend, batcher, busy = await busy_device(max_batch=32, delay_s=0.2)
        tasks = []
        for _ in range(30):
            tasks.append(asyncio.create_task(batcher.submit(rows(1), 1)))
            await asyncio.sleep(0.01)
        # the filled batch goes once arrivals stop for 0.2 s (a hang here is the failure)
        await asyncio.wait_for(_until(lambda: backend.calls == 2), 30)
        backend.gate.set()
        await asyncio.wait_for(asyncio.gather(busy, *tasks), 30)
        assert sorted(backend.batches) == [1, 30]
        await batcher.close()

    run(scenario())


def test_busy_device_filling_batch_goes_when_arrivals_stop() -> None:
    async def scenario() -> None:
        # A long expected batch, but nobody else comes.
        backend, batcher, busy = await busy_device(max_batch=4, delay_s=0.02)
        alone = asyncio.create_task(batcher.submit(rows(1), 1))
        # Dispatched while the first batch still runs (a hang here is the failure).
        await asyncio.wait_for(_until(lambda: backend.calls == 2), 30)
        backend.gate.set()
        await asyncio.gather(busy, alone)
        assert backend.batches == [1, 1]
        await batcher.close()

    run(scenario())


def test_filling_batch_goes_at_once_when_the_device_idles() -> None:
    async def scenario() -> None:
        # Waits of an hour: only the device going idle can release the filling batch (a
        # wrong estimate must not stall anyone).
        backend, batcher, busy = await busy_device(max_batch=4, delay_s=3600)
        waiting = asyncio.create_task(batcher.submit(rows(1), 1))
        await asyncio.sleep(0.01)
        backend.gate.set()  # the running batch ends: the filling one must go now
        await asyncio.gather(busy, waiting)
        assert backend.batches == [1, 1]
        await batcher.close()

    run(scenario())


class ThreadRecordingBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__(instances=2)
        self.threads: list[str] = []

    def infer(self, batch: dict[str, list[np.ndarray]], rows: int) -> dict[str, np.ndarray]:
        self.threads.append(threading.current_thread().name)
        return super().infer(batch, rows)


def test_lone_request_on_idle_fast_device_runs_on_the_loop_thread() -> None:
    async def scenario() -> None:
        backend = ThreadRecordingBackend()
        batcher = Batcher(
            backend, max_batch_size=4, max_queue_delay_s=0, max_queue_size=10, inline_below_s=60
        )
        batcher.start()
        await batcher.submit(rows(1), 1)  # no duration measured yet: a worker thread
        await batcher.submit(rows(1), 1)  # lone, idle, known to be quick: inline
        loop_thread = threading.current_thread().name
        assert backend.threads[0] != loop_thread
        assert backend.threads[1] == loop_thread
        # A batch of two (not lone) runs in a thread and keeps the device busy; what
        # arrives meanwhile goes to a worker thread too, never blocking the loop.
        backend.gate.clear()
        busy = [asyncio.create_task(batcher.submit(rows(1), 1)) for _ in range(2)]
        await asyncio.wait_for(_until(lambda: len(backend.threads) == 3), 30)
        second = asyncio.create_task(batcher.submit(rows(1), 1))
        await asyncio.wait_for(_until(lambda: len(backend.threads) == 4), 30)
        backend.gate.set()
        await asyncio.gather(*busy, second)
        assert loop_thread not in backend.threads[2:]
        assert sorted(backend.batches[2:]) == [1, 2]
        await batcher.close()

    run(scenario())


def test_inline_is_off_at_zero_and_for_slow_models() -> None:
    async def scenario() -> None:
        for inline_below_s in (0.0, 1e-9):
            backend = ThreadRecordingBackend()
            batcher = Batcher(
                backend,
                max_batch_size=4,
                max_queue_delay_s=0,
                max_queue_size=10,
                inline_below_s=inline_below_s,
            )
            batcher.start()
            for _ in range(3):
                await batcher.submit(rows(1), 1)
            assert threading.current_thread().name not in backend.threads
            await batcher.close()

    run(scenario())


def test_requests_that_arrive_alone_never_run_on_the_loop() -> None:
    # gRPC hands calls over one at a time: a lone one run on the loop would hold back the
    # next, so those are always given to a worker thread (inline=False).
    async def scenario() -> None:
        backend = ThreadRecordingBackend()
        batcher = Batcher(
            backend, max_batch_size=4, max_queue_delay_s=0, max_queue_size=10, inline_below_s=60
        )
        batcher.start()
        for _ in range(3):
            await batcher.submit(rows(1), 1, inline=False)
        assert threading.current_thread().name not in backend.threads
        await batcher.submit(rows(1), 1)  # the same lone request from HTTP: inline
        assert backend.threads[-1] == threading.current_thread().name
        await batcher.close()

    run(scenario())


def test_requests_expecting_company_wait_for_it_on_an_idle_device() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        # An hour-long delay: only the batch filling up can end the wait.
        batcher = Batcher(backend, max_batch_size=3, max_queue_delay_s=3600, max_queue_size=10)
        batcher.start()
        first = asyncio.create_task(batcher.submit(rows(1), 1, inline=False, company=True))
        await asyncio.sleep(0.01)
        assert backend.calls == 0  # idle device, yet it waits: more are said to be coming
        rest = [
            asyncio.create_task(batcher.submit(rows(1), 1, inline=False, company=True))
            for _ in range(2)
        ]
        await asyncio.gather(first, *rest)
        assert backend.batches == [3]
        # Without the hint an idle device takes a lone request at once (else: an hour).
        await batcher.submit(rows(1), 1, inline=False)
        assert backend.batches == [3, 1]
        await batcher.close()

    run(scenario())


def test_queue_wait_is_reported_once_per_batch_with_its_requests() -> None:
    """What requests waited in the queue, apart from their batch's backend time (the
    modelserve_queue_duration_seconds counter): summed per batch, with the count."""

    async def scenario() -> None:
        waits: list[tuple[float, int]] = []
        backend = FakeBackend()
        batcher = Batcher(
            backend, max_batch_size=8, max_queue_delay_s=0, max_queue_size=100,
            stats=BatcherStats(on_queue_wait=lambda s, n: waits.append((s, n))),
        )
        batcher.start()
        backend.gate.clear()
        first = asyncio.create_task(batcher.submit(rows(1), 1))
        await wait_entered(backend)
        others = [asyncio.create_task(batcher.submit(rows(n), n)) for n in (1, 2)]
        await _until(lambda: batcher.depth == 2)
        await asyncio.sleep(0.05)  # both queued requests wait at least this long
        backend.gate.set()
        await asyncio.gather(first, *others)
        assert [n for _, n in waits] == [1, 2]  # requests per batch, not rows
        assert waits[0][0] >= 0 and waits[1][0] >= 2 * 0.045  # asyncio may wake a hair early
        await batcher.close()

    run(scenario())


def test_an_instance_takes_its_next_batch_without_the_event_loop() -> None:
    """The instance thread goes from one batch to the next on its own: with the event
    loop blocked, a finished instance still starts what was queued behind it."""

    async def scenario() -> None:
        backend, batcher, first = await one_batch_held()
        queued = [asyncio.create_task(batcher.submit(rows(1), 1)) for _ in range(2)]
        await _until(lambda: batcher.depth == 2)
        backend.gate.set()
        deadline = time.monotonic() + 30
        while backend.calls < 2 and time.monotonic() < deadline:
            time.sleep(0.001)  # blocks the loop: only the instance thread can move
        assert backend.calls == 2
        await asyncio.gather(first, *queued)
        assert backend.batches == [1, 2]
        await batcher.close()

    run(scenario())


def test_callers_that_went_away_are_skipped() -> None:
    """A request whose caller gave up while queued never reaches the backend; a queue of
    nothing but such requests runs no batch at all."""

    async def scenario() -> None:
        backend, batcher, first = await one_batch_held()
        queued = [batcher.enqueue(rows(n), n) for n in (1, 2, 3)]
        queued[1].cancel()
        backend.gate.set()
        await asyncio.gather(first, queued[0], queued[2])
        assert backend.batches == [1, 4]  # the 2-row request left before its batch
        backend.gate.clear()
        busy = asyncio.create_task(batcher.submit(rows(1), 1))
        await _until(lambda: backend.calls == 3)
        for future in [batcher.enqueue(rows(1), 1) for _ in range(3)]:
            future.cancel()
        backend.gate.set()
        await busy
        await batcher.close()
        assert backend.batches == [1, 4, 1]

    run(scenario())


def test_requests_queued_many_at_once_are_answered_once_per_batch_and_answer() -> None:
    """The engine process's way: a worker's frame of requests goes in with
    `enqueue_many`; each `answer` (one per worker) is called once per batch, on the thread
    that ran it, with its own requests' tokens and slices in order; a backend failure
    reaches every answer."""

    async def scenario() -> None:
        got: dict[str, list] = {"a": [], "b": []}
        threads: set[str] = set()

        def answer_for(worker: str):
            def answer(answered, error) -> None:
                threads.add(threading.current_thread().name)
                got[worker].append((answered, error))

            return answer

        answer_a, answer_b = answer_for("a"), answer_for("b")
        backend, batcher, first = await one_batch_held()
        assert batcher.enqueue_many([(rows(1, 1), 1, "a1"), (rows(2, 2), 2, "a2")], answer_a) == 2
        assert batcher.enqueue_many([(rows(1, 3), 1, "b1")], answer_b) == 1
        assert batcher.enqueue_many([(rows(1, 4), 1, "a3")], answer_a) == 1
        backend.gate.set()
        await first
        await _until(lambda: got["a"] and got["b"])
        assert threads == {"infer_0"} and backend.batches == [1, 5]
        [(answered_a, error_a)] = got["a"]
        assert error_a is None and [token for token, _ in answered_a] == ["a1", "a2", "a3"]
        np.testing.assert_array_equal(answered_a[1][1]["y"], np.full((2, 2), 4.0))
        np.testing.assert_array_equal(answered_a[2][1]["y"], np.full((1, 2), 8.0))
        [(answered_b, _)] = got["b"]
        assert [token for token, _ in answered_b] == ["b1"]
        np.testing.assert_array_equal(answered_b[0][1]["y"], np.full((1, 2), 6.0))
        backend.fail = True
        batcher.enqueue_many([(rows(1), 1, "a4")], answer_a)
        await _until(lambda: len(got["a"]) == 2)
        [(token, result)], error = got["a"][1]
        assert token == "a4" and result is None and "on fire" in str(error)
        await batcher.close()

    run(scenario())


def test_enqueue_many_takes_what_fits_and_says_how_many() -> None:
    """A frame of requests larger than the queue's room: the front is queued and the
    count returned (the engine answers the rest 503); a full queue raises Overloaded."""

    async def scenario() -> None:
        backend, batcher, first = await one_batch_held(max_queue_size=3)
        requests = [(rows(1), 1, i) for i in range(5)]
        assert batcher.enqueue_many(requests, lambda answered, error: None) == 3
        with pytest.raises(Overloaded):
            batcher.enqueue_many(requests[3:], lambda answered, error: None)
        backend.gate.set()
        await first
        await batcher.close()

    run(scenario())


def test_queue_depth_is_reported_while_the_backend_is_stuck() -> None:
    """The autoscaler reads the queue depth: requests piling up behind a batch that
    never ends still show, without waiting for a batch to report them."""

    async def scenario() -> None:
        depths: list[int] = []
        backend = FakeBackend()
        batcher = Batcher(
            backend, max_batch_size=1, max_queue_delay_s=0, max_queue_size=100,
            stats=BatcherStats(on_queue_depth=depths.append),
        )
        batcher.start()
        backend.gate.clear()
        stuck = asyncio.create_task(batcher.submit(rows(1), 1))
        await wait_entered(backend)
        waiting = [asyncio.create_task(batcher.submit(rows(1), 1)) for _ in range(5)]
        await asyncio.wait_for(_until(lambda: depths and depths[-1] == 5), 30)
        backend.gate.set()
        await asyncio.gather(stuck, *waiting)
        await batcher.close()

    run(scenario())


def test_requests_arriving_together_on_an_idle_device_go_as_one_batch() -> None:
    """The idle instance is woken after the event-loop turn in which requests arrived,
    not by the first of them: those that arrive in one turn share a batch."""

    async def scenario() -> None:
        backend = FakeBackend()
        batcher = Batcher(backend, max_batch_size=8, max_queue_delay_s=0, max_queue_size=100)
        batcher.start()
        futures = []
        for n in range(3):  # one loop turn, which takes a while
            futures.append(batcher.enqueue(rows(1, n), 1))
            time.sleep(0.05)  # blocks the loop, not the instance thread
        results = await asyncio.gather(*futures)
        assert backend.batches == [3]
        for n, result in enumerate(results):
            np.testing.assert_array_equal(result["y"], np.full((1, 2), 2.0 * n))
        await batcher.close()

    run(scenario())
