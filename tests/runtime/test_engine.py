"""The engine process's side of the wire, in one process: a worker's frame of requests
read from its shared-memory arena, queued at once into a real batcher, what the full
queue refused answered 503, and the rest answered in one frame per batch with the
outputs written into each request's slot. (test_process runs the whole engine mode:
worker processes, sockets, HTTP.)"""

from __future__ import annotations

import asyncio
from multiprocessing import shared_memory
from types import SimpleNamespace

import numpy as np

from modelserve_runtime.engine import EngineServer, _WorkerPeer
from modelserve_runtime.metrics import Metrics

from .test_batcher import _until, one_batch_held

ROW = 2 * 4  # one row of the fake backend's float32 pairs, in bytes


def test_a_frame_of_requests_is_queued_refused_past_the_queue_and_answered_per_batch() -> None:
    async def scenario() -> None:
        backend, batcher, first = await one_batch_held(max_queue_size=2)
        server = EngineServer.__new__(EngineServer)  # no model to load: the batcher is given
        server.model = SimpleNamespace(batcher=batcher)
        server.inside_seconds = Metrics().engine_inside.labels("tiny")
        peer = _WorkerPeer(server)
        arena = shared_memory.SharedMemory(create=True, size=4 * 2 * ROW)
        try:
            peer.shm = shared_memory.SharedMemory(name=arena.name)
            messages = []
            for i in range(4):  # slot i: input at 2*i rows, output right after it
                np.ndarray((1, 2), np.float32, arena.buf, 2 * i * ROW)[:] = i + 1
                inputs = [("x", "<f4", (1, 2), 2 * i * ROW, None)]
                messages.append((100 + i, 1, inputs, (2 * i + 1) * ROW, ROW))
            refused: list[tuple] = []
            peer.link.send = lambda *replies: refused.extend(replies)  # type: ignore[method-assign]
            server.requests(peer, messages)
            assert [(r[0], r[2][:10], r[3]) for r in refused] == [
                (102, "queue full", 503),
                (103, "queue full", 503),
            ]
            assert peer.pending == 2
            answered: list[tuple] = []
            peer.link.send_threadsafe = lambda *replies: answered.append(replies)  # type: ignore[method-assign]
            backend.gate.set()
            await first
            await _until(lambda: answered)
            [replies] = answered  # both requests in one batch: one frame
            assert [reply[0] for reply in replies] == [100, 101] and peer.pending == 0
            for i, (_, outputs, error, _) in enumerate(replies):
                [(name, dtype, shape, offset, inline)] = outputs
                assert error is None and name == "y" and inline is None
                assert offset == (2 * i + 1) * ROW  # in the request's own slot
                got = np.ndarray(shape, dtype, arena.buf, offset)
                np.testing.assert_array_equal(got, np.full((1, 2), 2.0 * (i + 1)))
            await batcher.close()
        finally:
            peer.shm.close()
            arena.close()
            arena.unlink()

    asyncio.run(scenario())
