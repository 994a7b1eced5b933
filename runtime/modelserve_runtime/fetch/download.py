"""Stream one object to disk: bounded memory, SHA-256 while streaming, retries, atomic rename.

Every storage kind (s3.py, gcs.py, oci.py, web.py) only opens a byte stream; this module
does the rest the same way for all of them. A partial file never has the final name: it is
written to a hidden temporary beside it and renamed only after the digest matched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import queue
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from .errors import FetchError, TransientError
from .progress import Progress

# 128 KiB reads, at most 8 in flight between the network reader and the disk writer: 1 MiB
# held per download whatever the model's size. Small enough that a chunk is still in the
# CPU cache when it is hashed and written: on this VM's memory bandwidth (about 0.7 ms per
# MiB copied) 1 MiB chunks x 8 took 1.3x as long (hack/bench-fetch, docs/storage).
CHUNK = 128 << 10
READ_AHEAD = 8
ATTEMPTS = 6  # first try + 5 retries: 1, 2, 4, 8, 16 s apart (plus jitter)
MAX_DELAY = 30.0


@dataclass
class Stream:
    """An open object: its bytes from the requested offset on, and its whole size if known."""

    chunks: Iterator[bytes]
    total: int | None


class Source(Protocol):
    """One storage kind's way of reading one object."""

    uri: str
    # True when open(offset) really starts at offset (ranged reads); else a retry restarts.
    resumable: bool

    def open(self, offset: int) -> AbstractContextManager[Stream]: ...

    def expected_sha256(self) -> str | None:
        """A digest the store itself vouches for (an OCI layer's), checked like the spec's."""
        ...


@dataclass(frozen=True)
class Result:
    sha256: str
    size: int


def _mismatch(uri: str, expected: str, actual: str, where: str) -> FetchError:
    return FetchError(
        f"SHA-256 mismatch for {uri}: {where} says {expected}, the downloaded bytes are "
        f"{actual}. Refusing to serve them. Check that spec.model.sha256 belongs to this "
        f"object and that nobody replaced the object at that URI"
    )


def _backoff(attempt: int) -> float:
    return min(MAX_DELAY, 2.0 ** (attempt - 1)) * random.uniform(0.8, 1.2)


def download(source: Source, dest: pathlib.Path, sha256: str | None, *,
             attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep,
             progress: Progress | None = None, durable: bool = False) -> Result:
    """Write `source` to `dest` (atomically) and return its digest and size.

    `durable` fsyncs the file before the rename, for files that outlive the pod (the node
    cache): after a power loss the name must not point at bytes never written. A pod's own
    emptyDir needs no fsync: after a node restart the init container runs again.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    progress = progress or Progress(source.uri)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed after
        dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial", delete=False)
    tmp = pathlib.Path(handle.name)
    try:
        with handle:
            digest, done = _stream_with_retries(source, handle, attempts, sleep, progress)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        actual = digest.hexdigest()
        if sha256 and actual != sha256.lower():
            raise _mismatch(source.uri, sha256.lower(), actual, "spec.model.sha256")
        store_digest = source.expected_sha256()
        if store_digest and actual != store_digest:
            raise _mismatch(source.uri, store_digest, actual, "the registry's manifest")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    progress.print()
    return Result(sha256=actual, size=done)


def _stream_with_retries(source: Source, handle, attempts: int,
                         sleep: Callable[[float], None], progress: Progress):
    digest = hashlib.sha256()
    done = 0
    for attempt in range(1, attempts + 1):
        if done and not source.resumable:
            handle.seek(0)
            handle.truncate()
            digest, done = hashlib.sha256(), 0
        try:
            with source.open(done) as stream:
                progress.restart(done, stream.total)
                for chunk in _read_ahead(stream.chunks, digest):
                    handle.write(chunk)
                    done += len(chunk)
                    progress.advance(len(chunk))
                if stream.total is not None and done != stream.total:
                    raise TransientError(f"the stream ended at {done} of {stream.total} bytes")
            return digest, done
        except TransientError as e:
            if attempt == attempts:
                raise FetchError(
                    f"gave up on {source.uri} after {attempts} attempts; the last error was: "
                    f"{e}. Check that the store is reachable from the pod (endpoint, network "
                    f"policy, proxy)"
                ) from e
            delay = _backoff(attempt)
            print(f"fetch: {source.uri}: {e}; retrying in {delay:.1f} s "
                  f"(attempt {attempt + 1} of {attempts})", file=sys.stderr, flush=True)
            sleep(delay)
    raise AssertionError("unreachable")


_END = object()


def _read_ahead(chunks: Iterator[bytes], digest) -> Iterator[bytes]:
    """Yield `chunks`, read and hashed by a second thread up to READ_AHEAD chunks ahead.

    Network reads, SHA-256 and disk writes all release the GIL, so the network, the hash
    and the disk work at the same time, as in a plain `curl -o`; one thread doing them in
    turn measured 0.4 of curl's throughput (hack/bench-fetch). The queue bounds memory to
    READ_AHEAD chunks. The reader's error is raised here, after every chunk it read before
    it, so the bytes written and the digest always cover the same prefix.
    """
    ahead: queue.Queue = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                digest.update(chunk)
                if not put(chunk):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            put(e)

    reader = threading.Thread(target=read, name="fetch-read-ahead", daemon=True)
    reader.start()
    try:
        while (item := ahead.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # the consumer stopped early (a write failed): let the reader go
        # A reader blocked on the network is not waited for long: it is a daemon, the
        # download has failed, and closing the stream (the caller's `with`) wakes it.
        reader.join(timeout=5)


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file, read in CHUNK blocks (models are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def transient_on(*errors: type[BaseException], what: str) -> Iterator[None]:
    """Turn a library's network errors into TransientError, keeping its message."""
    try:
        yield
    except errors as e:
        raise TransientError(f"{what}: {type(e).__name__}: {e}") from e
