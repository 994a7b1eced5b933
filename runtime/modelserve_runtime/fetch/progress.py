"""Download progress as one line every few seconds: bytes done / total, rate, time left.

The lines go to the fetch container's log (the format is for people; the prefix is what
tools look for). Once a second the same numbers also go to modelserve_runtime.progress, whose
endpoint the operator reads into the ModelDeployment's status.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from .. import progress as pod_progress

PREFIX = "fetch: progress "
EVERY_SECONDS = 5.0
# To the pod's progress endpoint (a small file write): once a second, and at every percent,
# so a download that stalls still shows how far it got.
REPORT_EVERY_SECONDS = 1.0
REPORT_EVERY_FRACTION = 0.01
PHASE = "downloading"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def describe(done: int, total: int | None, seconds: float) -> str:
    """`512.0 MiB of 1.0 GiB (50%), 85.3 MiB/s, about 6 s left` (parts dropped when unknown)."""
    rate = done / seconds if seconds > 0 else 0.0
    text = human_bytes(done)
    if total:
        text += f" of {human_bytes(total)} ({100 * done / total:.0f}%)"
    if rate > 0:
        text += f", {human_bytes(rate)}/s"
        if total and total > done:
            text += f", about {(total - done) / rate:.0f} s left"
    return text


class Progress:
    """Called with every chunk; prints at most once per EVERY_SECONDS."""

    def __init__(self, what: str, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.out = out or sys.stdout
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.last_report = self.started
        self.reported = 0
        self.done = 0
        self.total: int | None = None

    def restart(self, done: int, total: int | None) -> None:
        """A retry starts again at `done` bytes (0 unless the source can resume)."""
        self.done, self.total = done, total
        self.report()

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        step = self.total * REPORT_EVERY_FRACTION if self.total else None
        if now - self.last_report >= REPORT_EVERY_SECONDS or (
                step is not None and self.done - self.reported >= step):
            self.last_report = now
            self.report()
        if now - self.last >= EVERY_SECONDS:
            self.last = now
            self.print()

    def report(self) -> None:
        self.reported = self.done
        pod_progress.report(PHASE, self.done, self.total)  # wall clock: read elsewhere

    def print(self) -> None:
        seconds = self.clock() - self.started
        print(f"{PREFIX}{self.what}: {describe(self.done, self.total, seconds)}",
              file=self.out, flush=True)
