"""The node-local model cache: one verified copy of each model per node, keyed by digest.

Layout under the cache root (a hostPath directory shared by every model pod on the node):

    sha256/<hex>          a verified model, read-only; its mtime is its last use
    sha256/.<hex>.*.partial   a download in progress (download.py), never a cache hit
    locks/<hex>.lock      held while a pod fills or links that model

Pods on one node coordinate with flock(2), which works across containers because they
share the host's kernel and the lock file's inode. A model is downloaded by the first pod
that needs it; a second pod waiting on the same lock finds it done. An entry is placed into
the pod's own model volume: a copy, since the cache and the pod's emptyDir are separate
mounts in the container, across which link(2) fails (a hard link where it works, as in
tests on one filesystem). Each pod serving its own copy means evicting an entry can never
break a running pod; it only costs a later pod a download.

Eviction skips models a pod on the node is serving: the runtime holds a shared flock on its
model's cache entry for as long as it runs (pin_from_env, called at runtime start, with
the entry's path in MODELSERVE_MODEL_CACHE_ENTRY), and eviction deletes an entry only if it
can take an exclusive lock on it. Locks die with their process, so a deleted pod never
keeps a model cached.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    digest: str
    path: pathlib.Path
    size: int
    last_used: float
    in_use: bool  # a pod volume on this node links it (link count above one)


class NodeCache:
    def __init__(self, root: pathlib.Path, max_bytes: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.clock = clock
        self.entries = root / "sha256"
        self.locks = root / "locks"

    def _dirs(self) -> None:
        for d in (self.entries, self.locks):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except PermissionError as e:
                raise PermissionError(
                    f"the model cache {self.root} is not writable by uid {os.getuid()}: the "
                    f"node's cache directory must be writable by the runtime user (the chart's "
                    f"modelCache settings, docs/model-storage.md)") from e

    @contextlib.contextmanager
    def _locked(self, name: str, blocking: bool = True) -> Iterator[bool]:
        """flock on locks/<name>.lock; yields False when non-blocking and already held."""
        with open(self.locks / f"{name}.lock", "a+") as handle:
            flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(handle, flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get(self, digest: str, fill: Callable[[pathlib.Path], object],
            dest: pathlib.Path) -> bool:
        """Put the model with `digest` at `dest`, filling the cache first if needed.

        `fill(path)` must write a verified file to `path` atomically (download.download
        does). Returns True for a cache hit.
        """
        self._dirs()
        entry = self.entries / digest
        with self._locked(digest):
            hit = entry.is_file()
            if hit:
                os.utime(entry)  # last use, for eviction
            else:
                self._drop_stale_partials(digest)
                fill(entry)
                entry.chmod(0o444)
            self._place(entry, dest)
        if not hit:
            self.evict(keep=digest)
        return hit

    def _drop_stale_partials(self, digest: str) -> None:
        # We hold the digest's lock, so no live download of it exists: any partial is left
        # from a killed pod.
        for partial in self.entries.glob(f".{digest}.*.partial"):
            partial.unlink(missing_ok=True)

    @staticmethod
    def _place(entry: pathlib.Path, dest: pathlib.Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.placing")
        tmp.unlink(missing_ok=True)
        try:
            os.link(entry, tmp)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            # Another filesystem: a local copy still saves the download, not the disk.
            shutil.copyfile(entry, tmp)
        os.replace(tmp, dest)

    def list(self) -> list[Entry]:
        out = []
        for path in self.entries.iterdir() if self.entries.is_dir() else ():
            if path.name.startswith("."):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.append(Entry(digest=path.name, path=path, size=st.st_size,
                             last_used=st.st_mtime, in_use=st.st_nlink > 1))
        return out

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used models no pod on this node links until under max_bytes."""
        if self.max_bytes is None:
            return []
        evicted = []
        with self._locked("evict"):
            entries = sorted(self.list(), key=lambda e: e.last_used)
            total = sum(e.size for e in entries)
            for entry in entries:
                if total <= self.max_bytes:
                    break
                if entry.in_use or entry.digest == keep:
                    continue
                with self._locked(entry.digest, blocking=False) as free:
                    if not free:  # a pod is filling or placing it right now
                        continue
                    if not _delete_unless_pinned(entry.path):  # a runtime serves it
                        continue
                total -= entry.size
                evicted.append(entry.digest)
                print(f"fetch: cache: evicted {entry.digest[:12]} ({entry.size} bytes, unused "
                      f"on this node)", flush=True)
            if total > self.max_bytes:
                print(f"fetch: cache: {total} bytes in use on this node, above the "
                      f"{self.max_bytes}-byte limit; every model left is in use",
                      file=sys.stderr, flush=True)
        return evicted


def _delete_unless_pinned(path: pathlib.Path) -> bool:
    """Delete a cache entry unless a running runtime holds its shared lock (pin_from_env)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in finally
    except FileNotFoundError:
        return True
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        # Lock files stay (in locks/): unlinking one would let a waiter holding the old
        # inode and a newcomer creating a new one both think they own the digest.
        path.unlink(missing_ok=True)
        return True
    finally:
        handle.close()


PIN_ENV = "MODELSERVE_MODEL_CACHE_ENTRY"
_pins: list = []  # open files whose shared locks last as long as the process


def pin_from_env() -> None:
    """Hold a shared lock on this pod's model in the node cache while the runtime runs."""
    path = os.environ.get(PIN_ENV)
    if not path:
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - kept open on purpose: the lock lives with it
        fcntl.flock(handle, fcntl.LOCK_SH)
    except OSError as e:
        # Not fatal: the pod serves its own copy; only eviction may pick this model.
        print(f"modelserve-runtime: cannot pin {path} in the node cache: {e}",
              file=sys.stderr, flush=True)
        return
    _pins.append(handle)
