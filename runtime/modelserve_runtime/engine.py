"""Shared engine for `--workers N --engine-process`: one process owns the GPU, the
batcher and the model; N HTTP worker processes parse requests and hand tensors over
through shared memory.

Why: separate workers each with their own model make the GPU time-slice between CUDA
contexts and split traffic into small batches (hack/bench-runtime measured a batch of
31 rows taking 4x its raw time). One engine keeps one context and full-size batches,
while HTTP parsing, the part that saturates one Python process, spreads over cores.

Wire: each worker opens one Unix-socket connection to the engine; frames are a 4-byte
length plus a pickle (both ends are our own processes). The worker owns a shared-memory
arena cut into slots; a request's input bytes go into a free slot and the engine writes
the outputs back into the same slot. Requests that do not fit (or find no free slot)
travel inline in the frame instead; nothing ever blocks on slots.

Both ends speak through `wire.FrameLink`, whose frames carry lists of messages: a worker
sends the requests of one event-loop turn as one frame, which the engine's event loop
queues at once (`Batcher.enqueue_many`); the instance thread that ran a batch writes its
outputs into the slots and answers each worker's requests of the batch in one frame
(`FrameLink.send_threadsafe`). Per request, the engine does no pickling, locking or
metric writing of its own: at saturation its GIL was the thread every request waited
for (docs/runtime.md, fifth round).

Messages, besides the greeting and the READY below:
- request, worker to engine: (id, rows, inputs, out_offset, out_capacity), each input
  (name, dtype, shape, offset in the arena or None, inline array or bytes or None);
- answer, engine to worker: (id, outputs, error, status), each output (name, dtype,
  shape, offset or None, inline array or None); outputs None when error is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import mmap
import pickle
import signal
import socket
import threading
import time
from dataclasses import replace
from functools import partial
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from .backends import Backend, Chunks, TensorSpec
from .busypoll import POLL
from .codec import DATATYPES, InferRequest
from .config import Settings
from .errors import InferenceError, Unavailable
from .metrics import Metrics
from .model import Model
from .wire import LENGTH, FrameLink, frame

log = logging.getLogger("modelserve.engine")

# The engine's second frame to a worker, once the model is warm: serve now.
READY = {"ready": True}


def _row_bytes(specs: list[TensorSpec]) -> int:
    total = 0
    for spec in specs:
        dtype = DATATYPES[spec.datatype]
        if dtype.kind == "O":
            continue  # BYTES always travel inline
        total += dtype.itemsize * math.prod(d if d > 0 else 1 for d in spec.shape[1:])
    return total


def _prefault(buf: memoryview, write: bool = False) -> None:
    """Touch every page of the arena once, up front. Otherwise each process takes a page
    fault per 4 KiB the first time it reads a slot: for ResNet-sized inputs thousands per
    batch, measured as a batch running ~3x slower in the engine than raw."""
    pages = np.frombuffer(buf, np.uint8)[:: mmap.PAGESIZE]
    if write:
        pages[:] = 0
    else:
        int(pages.sum())


def _write_outputs(
    shm: shared_memory.SharedMemory,
    offset: int,
    capacity: int,
    result: dict[str, np.ndarray],
) -> list[tuple]:
    """Outputs into the request's slot where they fit; inline in the frame if not."""
    buf = shm.buf
    out_meta = []
    end = offset + capacity
    for name, array in result.items():
        array = np.ascontiguousarray(array)
        if array.dtype.kind != "O" and offset + array.nbytes <= end:
            buf[offset : offset + array.nbytes] = array.reshape(-1).view(np.uint8)
            out_meta.append((name, array.dtype.str, array.shape, offset, None))
            offset += array.nbytes
        else:
            out_meta.append((name, array.dtype.str, array.shape, None, array))
    return out_meta


# --- engine side -------------------------------------------------------------------
class _WorkerPeer:
    """The engine's end of one worker's link: the link, the worker's arena, its load.
    Answers are written from instance threads: `lock` keeps the arena mapped while one
    writes into it, and keeps `pending` right."""

    def __init__(self, server: EngineServer) -> None:
        self.server = server
        self.link = FrameLink(self._on_messages, self._on_lost)
        self.shm: shared_memory.SharedMemory | None = None
        self.lock = threading.Lock()
        self.pending = 0
        self.closed = False

    def _on_messages(self, messages: list) -> None:
        if self.shm is None:  # the first message is the worker's hello
            self._attach(messages[0]["shm"])
            messages = messages[1:]
        if messages:
            self.server.requests(self, messages)

    def _attach(self, name: str) -> None:
        self.shm = shared_memory.SharedMemory(name=name)
        # The worker owns the segment; without this our resource tracker would unlink it
        # when the engine exits (Python < 3.13 has no track=False).
        with contextlib.suppress(Exception):
            resource_tracker.unregister(self.shm._name, "shared_memory")  # type: ignore[attr-defined]
        _prefault(self.shm.buf)

    def _on_lost(self) -> None:
        self.closed = True
        self.server.peers.discard(self)
        self.release()

    def answered(self, count: int) -> None:
        """`count` of this worker's requests are answered (or dropped)."""
        with self.lock:
            self.pending -= count
            self._release()

    def answer(
        self,
        answered: list[tuple[tuple, dict[str, np.ndarray] | None]],
        error: BaseException | None,
    ) -> None:
        """This worker's requests in one batch (batcher.Answer: the batcher calls it once
        per batch and worker), on the thread that ran the batch: outputs into their
        slots, the answers in one frame."""
        if error is not None and not isinstance(error, InferenceError):
            # The backend failed; the batcher has logged it, once for the batch.
            error = InferenceError(f"inference failed: {error}", 500)
        replies = []
        with self.lock:
            if not self.closed and self.shm is not None:  # else nobody to answer
                for (req_id, out_offset, out_capacity, _), result in answered:
                    if result is None:
                        replies.append((req_id, None, str(error), error.status))  # type: ignore[union-attr]
                    else:
                        outputs = _write_outputs(self.shm, out_offset, out_capacity, result)
                        replies.append((req_id, outputs, None, 0))
            self.pending -= len(answered)
            self._release()
        # Taken before the hand-over: once the frame is sent, this thread may lose the CPU
        # while the worker answers, and a later clock would count that as engine time
        # (more than the worker's whole round trip, seen on a loaded 2-core machine).
        now = time.monotonic()
        if replies:
            self.link.send_threadsafe(*replies)
        self.server.inside_seconds.inc(sum(now - token[3] for token, _ in answered))

    def release(self) -> None:
        """Unmap the arena once the worker is gone and no batch still reads from it."""
        with self.lock:
            self._release()

    def _release(self) -> None:  # lock held
        if self.closed and not self.pending and self.shm is not None:
            with contextlib.suppress(BufferError):
                self.shm.close()
            self.shm = None


class EngineServer:
    def __init__(self, settings: Settings, socket_path: str) -> None:
        settings = replace(settings, serves_http=False)
        self.settings = settings
        self.socket_path = socket_path
        self.metrics = Metrics()
        from .backends import create_backend

        self.model = Model(settings, create_backend(settings), self.metrics)
        self.peers: set[_WorkerPeer] = set()
        self.inside_seconds = self.metrics.engine_inside.labels(settings.model_name)
        self.warm = False  # loaded and warmed up: workers may serve

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await loop.run_in_executor(None, partial(self.model.load, warm_up=False))
        except Exception:
            log.exception("model %s failed to load", self.settings.model_name)
            return 1
        # Workers connect once this exists (the signature is known now) and set up their
        # arenas while the model warms up; each is ready when the "ready" frame comes.
        server = await loop.create_unix_server(self._connect, path=self.socket_path)
        try:
            await loop.run_in_executor(None, self.model.warm_up)
        except Exception:
            log.exception("model %s failed to warm up", self.settings.model_name)
            server.close()
            return 1
        self.model.start_batching()
        self.warm = True
        for peer in self.peers:
            peer.link.send(READY)
        log.info("engine up: model %s on %s", self.settings.model_name, self.socket_path)
        await stop.wait()
        server.close()
        # Workers drain their in-flight requests through us, then disconnect.
        deadline = time.monotonic() + self.settings.drain_timeout_s + 5
        while self.peers and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.model.batcher is not None:
            await self.model.batcher.close()
        self.model.backend.close()
        log.info("engine drained; exiting")
        return 0

    def _connect(self) -> FrameLink:
        peer = _WorkerPeer(self)
        self.peers.add(peer)
        backend = self.model.backend
        peer.link.send(
            {
                "inputs": backend.inputs,
                "outputs": backend.outputs,
                "batchable": backend.batchable,
                "platform": backend.platform,
            }
        )
        if self.warm:
            peer.link.send(READY)
        return peer.link

    def requests(self, peer: _WorkerPeer, messages: list[tuple]) -> None:
        """A frame of one worker's requests, on the event loop: queued at once."""
        received = time.monotonic()
        batcher = self.model.batcher
        assert peer.shm is not None and batcher is not None
        if len(messages) == 1 and batcher.idle():
            POLL.kick()  # a lone request: its worker's next is likely close (busypoll.py)
        buf = peer.shm.buf
        queued = []
        for req_id, rows, inputs, out_offset, out_capacity in messages:
            feeds = {}
            for name, dtype, shape, offset, inline in inputs:
                if inline is None:
                    count = math.prod(shape)
                    feeds[name] = np.frombuffer(buf, dtype, count, offset).reshape(shape)
                elif isinstance(inline, np.ndarray):
                    feeds[name] = inline
                else:
                    feeds[name] = np.frombuffer(inline, dtype=dtype).reshape(shape)
            queued.append((feeds, rows, (req_id, out_offset, out_capacity, received)))
        with peer.lock:
            peer.pending += len(queued)
        while queued:
            try:
                taken = batcher.enqueue_many(queued, peer.answer)
            except InferenceError as exc:  # shutting down, or the queue is full
                peer.answered(len(queued))
                peer.link.send(*((token[0], None, str(exc), exc.status) for _, _, token in queued))
                return
            queued = queued[taken:]  # the rest found the queue full: once more, to say so


def run_engine(settings: Settings, socket_path: str) -> int:
    POLL.configure(settings.busy_poll_us)
    server = EngineServer(settings, socket_path)
    try:
        import uvloop

        return uvloop.run(server.serve())
    except ImportError:
        return asyncio.run(server.serve())


# --- worker side -------------------------------------------------------------------
class _Signature(Backend):
    """The engine's model signature, as a Backend that only describes (never runs)."""

    def load(self) -> None:
        pass

    def infer(self, batch: Chunks, rows: int) -> dict[str, np.ndarray]:
        raise RuntimeError("workers do not run the model")


class RemoteModel(Model):
    """What an HTTP worker serves: validation here, inference in the engine process."""

    def __init__(self, settings: Settings, metrics: Metrics, socket_path: str) -> None:
        super().__init__(settings, _Signature(settings), metrics)
        self.socket_path = socket_path
        self.slot_rows = settings.shm_slot_rows
        self.slots = settings.shm_slots
        self.inline_counters = {
            reason: metrics.inline_requests.labels(reason) for reason in ("slots_busy", "too_large")
        }
        self.roundtrip_seconds = metrics.engine_roundtrip.labels(self.name)
        self.roundtrips = metrics.engine_roundtrips.labels(self.name)
        self._sock: socket.socket | None = None
        self._pending: dict[int, tuple[asyncio.Future, int | None]] = {}
        self.link: FrameLink | None = None
        self._next_id = 0
        self._closing = False

    def load(self, warm_up: bool = True) -> None:
        """Blocking (in a thread): wait for the engine, read its signature, make the
        arena, wait for the engine's ready frame."""
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.socket_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                time.sleep(0.1)  # the engine is still loading / building
        greeting: list = []  # messages read so far, not yet used
        sig = self._recv_message(sock, greeting)
        backend = self.backend
        backend.inputs, backend.outputs = sig["inputs"], sig["outputs"]
        backend.platform = sig["platform"]
        self._inputs = {s.name: s for s in backend.inputs}
        self._outputs = [s.name for s in backend.outputs]
        self.in_bytes = _row_bytes(backend.inputs) * self.slot_rows
        out_bytes = _row_bytes(backend.outputs) * self.slot_rows
        self.slot_bytes = max(64, self.in_bytes + out_bytes)
        self.shm = shared_memory.SharedMemory(create=True, size=self.slot_bytes * self.slots)
        _prefault(self.shm.buf, write=True)
        self._free = list(range(self.slots))
        sock.sendall(frame([{"shm": self.shm.name}]))
        # The engine may still be warming up (minutes for a cold engine build); it says
        # when it is ready. An engine that fails closes the socket: this load fails too.
        if self._recv_message(sock, greeting) != READY:
            raise ConnectionError("engine sent something other than its ready message")
        self._sock = sock

    @classmethod
    def _recv_message(cls, sock: socket.socket, unread: list) -> object:
        """The next message, read before the link takes the socket over; a frame's
        other messages wait in `unread`."""
        while not unread:
            header = cls._recv_exact(sock, LENGTH.size)
            unread.extend(pickle.loads(cls._recv_exact(sock, LENGTH.unpack(header)[0])))
        return unread.pop(0)

    @staticmethod
    def _recv_exact(sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("engine closed the connection")
            data += chunk
        return data

    async def start_batching(self) -> None:  # type: ignore[override]
        self.link = FrameLink(self._on_replies, self._on_lost)
        await asyncio.get_running_loop().create_unix_connection(lambda: self.link, sock=self._sock)
        self.ready = True

    def _on_replies(self, replies: list[tuple]) -> None:
        pending = self._pending
        for reply in replies:
            fut, slot = pending.pop(reply[0], (None, None))
            if fut is None:
                continue
            if fut.done():
                # The caller gave up (cancelled) while the engine still used the slot; it
                # is free only now that the engine has answered.
                if slot is not None:
                    self._free.append(slot)
                continue
            fut.set_result(reply)

    def _on_lost(self) -> None:
        self.ready = False
        if self._closing:
            log.info("engine connection closed")
        else:
            log.error("engine connection lost")
        # Nothing writes into the arena any more: every slot is free again.
        for fut, slot in self._pending.values():
            if not fut.done():
                fut.set_exception(Unavailable("inference engine unavailable"))
            if slot is not None:
                self._free.append(slot)
        self._pending.clear()

    async def infer(self, request: InferRequest) -> list[tuple[str, np.ndarray, bool]]:
        if not self.ready:
            raise Unavailable(f"model {self.name!r} is not ready")
        feeds, rows = self.validate(request)
        buf = self.shm.buf
        slot = self._free.pop() if self._free else None
        base = slot * self.slot_bytes if slot is not None else 0
        offset, in_end = base, base + self.in_bytes
        metas = []
        inline = None  # why a tensor travels in the frame, if one does
        for name, array in feeds.items():
            if array.dtype.kind == "O":
                metas.append((name, array.dtype.str, array.shape, None, array))
            elif slot is not None and offset + array.nbytes <= in_end:
                buf[offset : offset + array.nbytes] = (
                    np.ascontiguousarray(array).reshape(-1).view(np.uint8)
                )
                metas.append((name, array.dtype.str, array.shape, offset, None))
                offset += array.nbytes
            else:
                inline = "slots_busy" if slot is None else "too_large"
                metas.append((name, array.dtype.str, array.shape, None, array.tobytes()))
        if inline is not None:
            self.inline_counters[inline].inc()
        self._next_id += 1
        req_id = self._next_id
        fut = asyncio.get_running_loop().create_future()
        self._pending[req_id] = (fut, slot)
        sent = time.monotonic()
        out_capacity = self.slot_bytes - self.in_bytes if slot is not None else 0
        # Leaves with the other requests of this event-loop turn, in one frame.
        self.link.send((req_id, rows, metas, in_end if slot is not None else 0, out_capacity))
        if len(self._pending) == 1:  # our only request: poll for its answer (busypoll.py)
            POLL.kick()
        # Cancelled here, the slot stays taken until the engine answers (_on_replies).
        _, outputs, error, status = await fut
        self.roundtrip_seconds.inc(time.monotonic() - sent)
        self.roundtrips.inc()
        try:
            if error is not None:
                raise InferenceError(error, status)
            results = {}
            for name, dtype, shape, out_off, inline in outputs:
                if inline is not None:
                    results[name] = inline
                else:
                    count = math.prod(shape)
                    # Copy out: the slot is reused as soon as this request returns.
                    results[name] = np.frombuffer(buf, dtype, count, out_off).reshape(shape).copy()
        finally:
            if slot is not None:
                self._free.append(slot)
        return self.select_outputs(request, results)

    def close(self) -> None:
        self._closing = True  # our own hang-up at exit is no error
        if self.link is not None:
            self.link.close()
        with contextlib.suppress(Exception):
            self.shm.close()
            self.shm.unlink()
