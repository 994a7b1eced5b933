"""`--workers N`: N server processes on one port (SO_REUSEPORT), one supervisor.

Why: one Python process tops out at a few thousand requests/s of HTTP parsing, well
below what a GPU does with a batched model (hack/bench-runtime). Each worker is a full
server with its own event loop, GIL, batcher and model instance on the same GPU; the
kernel spreads connections over them. Metrics stay one view through prometheus_client's
multiprocess mode (every worker writes to a shared directory; any worker's /metrics
aggregates). The supervisor loads nothing: it starts workers, forwards SIGTERM so every
worker drains, and exits non-zero if a worker dies on its own, so Kubernetes restarts
the pod rather than serving at reduced capacity unnoticed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

log = logging.getLogger("modelserve.supervisor")


def _strip_workers(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return out


def supervise(argv: list[str], workers: int, engine_process: bool = False) -> int:
    metrics_dir = tempfile.mkdtemp(prefix="modelserve-metrics-")
    env = dict(
        os.environ,
        PROMETHEUS_MULTIPROC_DIR=metrics_dir,
        MODELSERVE_REUSE_PORT="1",
        MODELSERVE_WORKERS="1",
    )
    cmd = [sys.executable, "-m", "modelserve_runtime.server", *_strip_workers(argv)]
    procs = []
    if engine_process:
        # One engine owns the model; workers parse HTTP and hand tensors over (engine.py).
        env["MODELSERVE_ENGINE_SOCKET"] = os.path.join(metrics_dir, "engine.sock")
        procs.append(subprocess.Popen(cmd, env=dict(env, MODELSERVE_ROLE="engine")))
        env["MODELSERVE_ROLE"] = "worker"
    procs += [
        subprocess.Popen(cmd, env=dict(env, MODELSERVE_WORKER_ID=str(i))) for i in range(workers)
    ]
    log.info("started %d workers: %s", workers, [p.pid for p in procs])
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    try:
        while any(p.poll() is None for p in procs):
            died = [p for p in procs if p.poll() not in (None, 0)]
            if died and not stopping:
                log.error("worker %d exited with %d; stopping all", died[0].pid, died[0].returncode)
                code = 1
                forward(signal.SIGTERM, None)
            time.sleep(0.2)
    finally:
        from prometheus_client import multiprocess

        for p in procs:
            multiprocess.mark_process_dead(p.pid, metrics_dir)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    codes = [p.returncode for p in procs]
    return code or next((c for c in codes if c), 0)
