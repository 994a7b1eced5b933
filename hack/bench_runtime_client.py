#!/usr/bin/env python3
"""Closed-loop HTTP load generator for hack/bench-runtime.

One request body (prepared by the caller) is POSTed by `concurrency` workers spread over
several processes, so the client is not the bottleneck of a single-process server.
Prints one JSON line: throughput (req/s), p50/p99 latency (ms), errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time


async def _worker_proc(url, body, headers, workers, warmup_s, duration_s, out) -> None:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    t_measure = start + warmup_s
    t_end = t_measure + duration_s
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            nonlocal errors
            while True:
                t0 = time.perf_counter()
                if t0 >= t_end:
                    return
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except Exception:
                    ok = False
                t1 = time.perf_counter()
                if t0 >= t_measure:
                    if ok:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1

        await asyncio.gather(*(one() for _ in range(workers)))
    out.put((latencies, errors))


def _proc_main(url, body, headers, workers, warmup_s, duration_s, out) -> None:
    try:
        import uvloop

        uvloop.run(_worker_proc(url, body, headers, workers, warmup_s, duration_s, out))
    except ImportError:
        asyncio.run(_worker_proc(url, body, headers, workers, warmup_s, duration_s, out))


def run_load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    procs: int,
) -> dict[str, float]:
    procs = max(1, min(procs, concurrency))
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    workers = [
        ctx.Process(target=_proc_main, args=(url, body, headers, n, warmup_s, duration_s, out))
        for n in shares
    ]
    for w in workers:
        w.start()
    latencies: list[float] = []
    errors = 0
    for _ in workers:
        lat, err = out.get()
        latencies.extend(lat)
        errors += err
    for w in workers:
        w.join()
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
            if latencies
            else float("nan")
        )

    return {
        "concurrency": concurrency,
        "throughput": len(latencies) / duration_s,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": errors,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--body", required=True, help="file with the request body")
    p.add_argument("--header", action="append", default=[], help="Name: value")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--procs", type=int, default=8)
    a = p.parse_args()
    with open(a.body, "rb") as f:
        body = f.read()
    headers = dict(h.split(": ", 1) for h in a.header)
    print(json.dumps(run_load(a.url, body, headers, a.concurrency, a.warmup, a.duration, a.procs)))


if __name__ == "__main__":
    main()
