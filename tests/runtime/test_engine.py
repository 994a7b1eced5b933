"""The engine process's side of the wire, in one process: a worker's frame of requests
read from its shared-memory arena, queued at once into a real batcher, what the full
queue refused answered 503, and the rest answered in one frame per batch with the
outputs written into each request's slot. (test_process runs the whole engine mode:
worker processes, sockets, HTTP.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from types import SimpleNamespace

import numpy as np
import pytest

from modelserve_runtime.batcher import Batcher
from modelserve_runtime.engine import EngineServer, _WorkerPeer
from modelserve_runtime.metrics import Metrics

from .test_batcher import _until, one_batch_held

ROW = 2 * 4  # one row of the fake backend's float32 pairs, in bytes


def engine_with(batcher: Batcher) -> EngineServer:
    server = EngineServer.__new__(EngineServer)  # no model to load: the batcher is given
    server.model = SimpleNamespace(batcher=batcher)
    server.inside_seconds = Metrics().engine_inside.labels("tiny")
    return server


@dataclass
class Worker:
    peer: _WorkerPeer  # the worker's end in the engine
    frame: list[tuple]  # its requests, as the engine reads them
    arena: shared_memory.SharedMemory
    refused: list[tuple] = field(default_factory=list)  # sent from the event loop
    answered: list[tuple] = field(default_factory=list)  # frames sent from batch threads


@contextlib.contextmanager
def worker(server: EngineServer, requests: int) -> Iterator[Worker]:
    """A worker's arena with `requests` one-row requests in it (slot i: the input at 2*i
    rows holding i + 1, the output right after it), its peer in the engine, and the
    frame of those requests; what the peer sends back is collected, not written."""
    arena = shared_memory.SharedMemory(create=True, size=requests * 2 * ROW)
    peer = _WorkerPeer(server)
    peer.shm = shared_memory.SharedMemory(name=arena.name)
    messages = []
    for i in range(requests):
        np.ndarray((1, 2), np.float32, arena.buf, 2 * i * ROW)[:] = i + 1
        inputs = [("x", "<f4", (1, 2), 2 * i * ROW, None)]
        messages.append((100 + i, 1, inputs, (2 * i + 1) * ROW, ROW))
    w = Worker(peer, messages, arena)
    peer.link.send = lambda *replies: w.refused.extend(replies)  # type: ignore[method-assign]
    peer.link.send_threadsafe = lambda *replies: w.answered.append(replies)  # type: ignore[method-assign]
    try:
        yield w
    finally:
        peer.shm.close()
        arena.close()
        arena.unlink()


def test_a_frame_of_requests_is_queued_refused_past_the_queue_and_answered_per_batch() -> None:
    async def scenario() -> None:
        backend, batcher, first = await one_batch_held(max_queue_size=2)
        server = engine_with(batcher)
        with worker(server, 4) as w:
            peer, answered = w.peer, w.answered
            server.requests(peer, w.frame)
            assert [(r[0], r[2][:10], r[3]) for r in w.refused] == [
                (102, "queue full", 503),
                (103, "queue full", 503),
            ]
            assert peer.pending == 2
            backend.gate.set()
            await first
            await _until(lambda: answered)
            [replies] = answered  # both requests in one batch: one frame
            assert [reply[0] for reply in replies] == [100, 101] and peer.pending == 0
            for i, (_, outputs, error, _) in enumerate(replies):
                [(name, dtype, shape, offset, inline)] = outputs
                assert error is None and name == "y" and inline is None
                assert offset == (2 * i + 1) * ROW  # in the request's own slot
                got = np.ndarray(shape, dtype, w.arena.buf, offset)
                np.testing.assert_array_equal(got, np.full((1, 2), 2.0 * (i + 1)))
            await batcher.close()

    asyncio.run(scenario())


def test_a_failed_batch_answers_every_worker_500_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        backend, batcher, first = await one_batch_held()
        server = engine_with(batcher)
        with worker(server, 2) as a, worker(server, 1) as b:
            server.requests(a.peer, a.frame)
            server.requests(b.peer, b.frame)
            backend.fail = True
            backend.gate.set()
            with contextlib.suppress(RuntimeError):
                await first
            await _until(lambda: a.answered and b.answered)
            for answered, ids in ((a.answered, [100, 101]), (b.answered, [100])):
                [replies] = answered  # one frame each, both requests of a in it
                assert [(r[0], r[1], r[3]) for r in replies] == [(i, None, 500) for i in ids]
                assert all("device on fire" in r[2] for r in replies)
            assert a.peer.pending == b.peer.pending == 0
            await batcher.close()

    with caplog.at_level(logging.ERROR, logger="modelserve"):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records] == ["inference failed"]
