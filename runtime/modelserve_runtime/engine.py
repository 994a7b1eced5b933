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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import mmap
import os
import pickle
import signal
import socket
import struct
import time
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np

from .backends import Backend, Chunks, TensorSpec
from .codec import DATATYPES, InferRequest
from .config import Settings
from .errors import InferenceError, Unavailable
from .metrics import Metrics
from .model import Model

log = logging.getLogger("modelserve.engine")
_LEN = struct.Struct("<I")


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (length,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    return pickle.loads(await reader.readexactly(length))


def _frame(obj: Any) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(payload)) + payload


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


# --- engine side -------------------------------------------------------------------
class EngineServer:
    def __init__(self, settings: Settings, socket_path: str) -> None:
        self.settings = settings
        self.socket_path = socket_path
        self.metrics = Metrics()
        from .backends import create_backend

        self.model = Model(settings, create_backend(settings), self.metrics)
        self.connections: set[asyncio.Task] = set()

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await loop.run_in_executor(None, self.model.load)
        except Exception:
            log.exception("model %s failed to load", self.settings.model_name)
            return 1
        self.model.start_batching()
        # Workers connect only once this exists: the socket is the readiness signal.
        server = await asyncio.start_unix_server(self._connection, path=self.socket_path)
        log.info("engine up: model %s on %s", self.settings.model_name, self.socket_path)
        await stop.wait()
        server.close()
        # Workers drain their in-flight requests through us, then disconnect.
        deadline = time.monotonic() + self.settings.drain_timeout_s + 5
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.model.batcher is not None:
            await self.model.batcher.close()
        self.model.backend.close()
        log.info("engine drained; exiting")
        return 0

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        shm = None
        pending: set[asyncio.Task] = set()
        try:
            backend = self.model.backend
            writer.write(
                _frame(
                    {
                        "inputs": backend.inputs,
                        "outputs": backend.outputs,
                        "batchable": backend.batchable,
                        "platform": backend.platform,
                    }
                )
            )
            hello = await _read_frame(reader)
            shm = shared_memory.SharedMemory(name=hello["shm"])
            # The worker owns the segment; without this our resource tracker would
            # unlink it when the engine exits (Python < 3.13 has no track=False).
            with contextlib.suppress(Exception):
                resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
            _prefault(shm.buf)
            while True:
                try:
                    msg = await _read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                t = asyncio.create_task(self._one(msg, shm.buf, writer))
                pending.add(t)
                t.add_done_callback(pending.discard)
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            writer.close()
            if shm is not None:
                with contextlib.suppress(BufferError):
                    shm.close()
            self.connections.discard(task)

    async def _one(self, msg: dict, buf: memoryview, writer: asyncio.StreamWriter) -> None:
        feeds = {}
        for name, dtype, shape, offset, inline in msg["inputs"]:
            if inline is not None:
                feeds[name] = (
                    inline
                    if isinstance(inline, np.ndarray)
                    else (np.frombuffer(inline, dtype=dtype).reshape(shape))
                )
            else:
                count = math.prod(shape)
                feeds[name] = np.frombuffer(buf, dtype, count, offset).reshape(shape)
        try:
            assert self.model.batcher is not None
            outputs = await self.model.batcher.submit(feeds, msg["rows"])
        except InferenceError as exc:
            writer.write(_frame({"id": msg["id"], "error": str(exc), "status": exc.status}))
            return
        except Exception as exc:  # the backend failed
            log.exception("inference failed")
            writer.write(
                _frame({"id": msg["id"], "error": f"inference failed: {exc}", "status": 500})
            )
            return
        finally:
            del feeds  # release the views into the worker's slot
        out_meta = []
        offset, end = msg["out_offset"], msg["out_offset"] + msg["out_capacity"]
        for name, array in outputs.items():
            array = np.ascontiguousarray(array)
            if array.dtype.kind != "O" and offset + array.nbytes <= end:
                buf[offset : offset + array.nbytes] = array.reshape(-1).view(np.uint8)
                out_meta.append((name, array.dtype.str, array.shape, offset, None))
                offset += array.nbytes
            else:
                out_meta.append((name, array.dtype.str, array.shape, None, array))
        writer.write(_frame({"id": msg["id"], "outputs": out_meta}))


def run_engine(settings: Settings, socket_path: str) -> int:
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
        self.slot_rows = int(os.environ.get("MODELSERVE_SHM_SLOT_ROWS", "4"))
        self.slots = int(os.environ.get("MODELSERVE_SHM_SLOTS", "64"))
        self._sock: socket.socket | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._next_id = 0

    def load(self) -> None:
        """Blocking (in a thread): wait for the engine, read its signature, make the arena."""
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.socket_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                time.sleep(0.1)  # the engine is still loading / building
        header = self._recv_exact(sock, _LEN.size)
        sig = pickle.loads(self._recv_exact(sock, _LEN.unpack(header)[0]))
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
        sock.sendall(_frame({"shm": self.shm.name}))
        self._sock = sock

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
        self._reader, self._writer = await asyncio.open_unix_connection(sock=self._sock)
        self._reader_task = asyncio.get_running_loop().create_task(self._read_replies())
        self.ready = True

    async def _read_replies(self) -> None:
        try:
            while True:
                reply = await _read_frame(self._reader)
                fut = self._pending.pop(reply["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.ready = False
            log.error("engine connection lost")
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(Unavailable("inference engine unavailable"))

    async def infer(self, request: InferRequest) -> list[tuple[str, np.ndarray, bool]]:
        if not self.ready:
            raise Unavailable(f"model {self.name!r} is not ready")
        feeds, rows = self.validate(request)
        buf = self.shm.buf
        slot = self._free.pop() if self._free else None
        base = slot * self.slot_bytes if slot is not None else 0
        offset, in_end = base, base + self.in_bytes
        metas = []
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
                metas.append((name, array.dtype.str, array.shape, None, array.tobytes()))
        self._next_id += 1
        req_id = self._next_id
        fut = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            self._writer.write(
                _frame(
                    {
                        "id": req_id,
                        "rows": rows,
                        "inputs": metas,
                        "out_offset": in_end if slot is not None else 0,
                        "out_capacity": self.slot_bytes - self.in_bytes if slot is not None else 0,
                    }
                )
            )
            reply = await fut
            if "error" in reply:
                raise InferenceError(reply["error"], reply["status"])
            results = {}
            for name, dtype, shape, out_off, inline in reply["outputs"]:
                if inline is not None:
                    results[name] = inline
                else:
                    count = math.prod(shape)
                    # Copy out: the slot is reused as soon as this request returns.
                    results[name] = np.frombuffer(buf, dtype, count, out_off).reshape(shape).copy()
        finally:
            self._pending.pop(req_id, None)
            if slot is not None:
                self._free.append(slot)
        if request.outputs:
            return [
                (o.name, results[o.name], request.binary_output if o.binary is None else o.binary)
                for o in request.outputs
            ]
        return [(name, results[name], request.binary_output) for name in self._outputs]

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        with contextlib.suppress(Exception):
            self.shm.close()
            self.shm.unlink()
