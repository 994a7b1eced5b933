"""Continuous inference traffic through a user-facing Service, counted per phase.

Requests go from this host to the Service's ClusterIP, through kube-proxy's rules, to real
runtime pods on the real node: the path a client in the cluster takes. A steady rate plus
bursts of concurrent requests; every answer that is not a 2xx, every reset and every
timeout is a failure of the phase it started in. Each request opens its own connection,
so kube-proxy picks a backend per request and the observed split between versions is a
per-request split (a keep-alive client would be pinned to one pod per connection).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import threading
import time

import aiohttp

from e2e.models import REQUEST_X


@dataclasses.dataclass
class PhaseStats:
    name: str
    sent: int = 0
    ok: int = 0
    failures: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    versions: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.monotonic)
    ended: float | None = None
    # Longest run of consecutive failures, in seconds (an outage a user would notice).
    worst_gap_s: float = 0.0
    _failing_since: float | None = None

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def split(self) -> dict[str, float]:
        total = sum(self.versions.values()) or 1
        return {v: round(100 * n / total, 1) for v, n in sorted(self.versions.items())}

    def row(self) -> str:
        failures = ", ".join(f"{k}: {n}" for k, n in self.failures.most_common()) or "-"
        return (f"{self.name:<38} {self.sent:>6} {self.failed:>6} {self.percentile(50):>7.1f}"
                f" {self.percentile(99):>7.1f}  gap {self.worst_gap_s:>4.1f}s  split "
                f"{self.split()}  failures {failures}")


HEADER = (f"{'phase':<38} {'sent':>6} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7}")


class Traffic:
    """Background load: `rate` requests/s plus `burst` concurrent ones every `burst_every` s."""

    def __init__(self, url: str, model: str, rate: float = 25, burst: int = 20,
                 burst_every: float = 5.0, timeout: float = 10.0, host: str | None = None):
        self.url = f"{url}/v2/models/{model}/infer"
        # A Host header for a route that matches on hostname (a gateway listener).
        self.headers = {"Host": host} if host else {}
        self.rate, self.burst, self.burst_every, self.timeout = rate, burst, burst_every, timeout
        self.phases: list[PhaseStats] = []
        self._current = PhaseStats("warm-up")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                 "data": REQUEST_X}]}

    def start(self) -> Traffic:
        self._thread.start()
        return self

    @contextlib.contextmanager
    def phase(self, name: str):
        """Requests started inside the block count for `name`."""
        stats = PhaseStats(name)
        with self._lock:
            self._current = stats
        try:
            yield stats
        finally:
            with self._lock:
                self._current = PhaseStats("between phases")
            # Requests still in flight finish into this phase: wait for them.
            deadline = time.monotonic() + self.timeout + 1
            while stats.sent > stats.ok + stats.failed and time.monotonic() < deadline:
                time.sleep(0.1)
            stats.ended = time.monotonic()
            self.phases.append(stats)

    def wait_until_serving(self, timeout: float = 120) -> None:
        """Until a whole second of requests succeeded (the Service has ready endpoints)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = PhaseStats("probe")
            with self._lock:
                self._current = probe
            time.sleep(1.5)
            if probe.ok >= self.rate // 2 and probe.failed == 0:
                return
        raise AssertionError(f"no clean second of traffic to {self.url} in {timeout}s: "
                             f"{probe.row()}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)

    def table(self) -> str:
        return "\n".join([HEADER, *(p.row() for p in self.phases)])

    # -- the event loop thread -----------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        # force_close: a new connection per request, so kube-proxy balances per request.
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            tasks: set[asyncio.Task] = set()
            interval = 1 / self.rate
            next_burst = time.monotonic() + self.burst_every
            while not self._stop.is_set():
                count = 1
                if time.monotonic() >= next_burst:
                    count += self.burst
                    next_burst += self.burst_every
                for _ in range(count):
                    task = asyncio.create_task(self._one(session))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(interval)
            if tasks:
                await asyncio.wait(tasks)

    async def _one(self, session: aiohttp.ClientSession) -> None:
        with self._lock:
            stats = self._current
            stats.sent += 1
        started = time.monotonic()
        outcome, version = "ok", None
        try:
            async with session.post(self.url, json=self.body, headers=self.headers) as response:
                body = await response.json(content_type=None)
                if response.status // 100 == 2:
                    version = body.get("model_version")
                else:
                    outcome = f"HTTP {response.status}"
        except TimeoutError:
            outcome = "timeout"
        except aiohttp.ClientConnectionError as error:
            outcome = type(error).__name__
        except (aiohttp.ClientError, ValueError) as error:
            outcome = type(error).__name__
        now = time.monotonic()
        with self._lock:
            if outcome == "ok":
                stats.ok += 1
                stats.versions[version] += 1
                stats.latencies_ms.append((now - started) * 1000)
                stats._failing_since = None
            else:
                stats.failures[outcome] += 1
                if stats._failing_since is None:
                    stats._failing_since = started
                stats.worst_gap_s = max(stats.worst_gap_s, now - stats._failing_since)
