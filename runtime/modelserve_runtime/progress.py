"""What a pod is doing before it is Ready, for the operator to put into status.

A model pod spends its slow minutes before the runtime answers its readiness probe: the
fetch init container downloads the model, then the runtime loads it (and, on a GPU, builds
an engine). Whatever does that work calls `report(phase, done, total)`; an HTTP endpoint on
the pod's own port (contract.PROGRESS_PATH) answers the latest report as JSON, and the
operator, only while the pod is not Ready, reads it from the pod IP. So progress reaches
the ModelDeployment's status without the pod holding API credentials and without the
operator reading logs (it has no pods/log permission).

The report lives in a small file, not only in memory: the runtime's engine process (which
loads the model) and its HTTP worker processes (which answer the endpoint) are different
processes of one container (supervisor.py). The fetch init container serves the same
endpoint itself (`serve_in_background`): the runtime container has not started yet, so the
port is free.

    from modelserve_runtime import progress
    progress.report("building engine", done=3, total=12, unit="layers")
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from .contract import PROGRESS_PATH

log = logging.getLogger("modelserve.progress")

FILE_ENV = "MODELSERVE_PROGRESS_FILE"


def _path() -> str:
    return os.environ.get(FILE_ENV) or os.path.join(tempfile.gettempdir(),
                                                    "modelserve-progress.json")


_lock = threading.Lock()  # report() reads, then replaces, the file


def estimate(record: dict[str, Any], now: float) -> dict[str, Any]:
    """The endpoint's answer: the record plus the seconds spent in its phase, and rate and
    time left when it counts units, all computed when asked.

    Computed at read time, not at report time, so a download that stalls shows its rate
    falling and its time left growing instead of the last good numbers, and a step that
    reports no count ("building engine") still shows its seconds growing.
    """
    out = {k: record.get(k) for k in ("phase", "unit", "done", "total")}
    done, started = record.get("done"), record.get("startedAt")
    if isinstance(started, int | float):
        out["elapsedSeconds"] = int(max(0.0, now - started))
    at_start = record.get("doneAtStart") or 0
    if isinstance(done, int) and isinstance(started, int | float) and done > at_start \
            and now > started:
        rate = (done - at_start) / (now - started)
        out["ratePerSecond"] = round(rate, 1)
        total = record.get("total")
        if isinstance(total, int) and total >= done:
            out["secondsLeft"] = round((total - done) / rate, 1)
    return out


def report(phase: str, done: int | None = None, total: int | None = None, *,
           unit: str | None = "bytes", clock: Callable[[], float] = time.time) -> None:
    """Record what this pod is doing now; cheap enough to call a few times a second.

    `phase` is a few words a person reads ("downloading", "loading the model", "building
    engine"); `done`/`total` count `unit`s of it when known (a phase without a count
    still shows its seconds: `estimate`). Never raises: progress is a
    courtesy, a full /tmp must not fail a model load.
    """
    path = _path()
    with _lock:
        # The phase's start lives in the file too: whichever process reports next (the
        # engine process, a retry) continues the same rate and estimate.
        last = _read(path)
        if last.get("phase") == phase and isinstance(last.get("startedAt"), int | float):
            started, at_start = last["startedAt"], last.get("doneAtStart") or 0
        else:
            started, at_start = clock(), done or 0
        record = {"phase": phase, "unit": unit, "done": done, "total": total,
                  "startedAt": started, "doneAtStart": at_start}
        partial = f"{path}.{os.getpid()}.{threading.get_ident()}"  # one per writer
        try:
            with open(partial, "w") as f:
                json.dump(record, f)
            os.replace(partial, path)  # a reader never sees half a report
        except OSError as e:
            log.debug("cannot record progress in %s: %s", path, e)


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def current(clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """The latest report of any process in this container, with its estimate; {} before
    the first."""
    record = _read(_path())
    return estimate(record, clock()) if record else {}


def serve_in_background(port: int, host: str = "0.0.0.0"):
    """Answer PROGRESS_PATH on `port` from a daemon thread (the fetch init container);
    the HTTPServer, or None when the port is taken: the download goes on, only without
    visible progress."""
    # Imported here: http.server pulls in the email package, a cost every fetch would pay
    # at start even when it serves no progress (hack/bench-fetch).
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != PROGRESS_PATH:
                self.send_error(404)
                return
            body = json.dumps(current()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    try:
        server = http.server.ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        log.warning("progress endpoint not served on port %d: %s", port, e)
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="progress-http", daemon=True).start()
    return server
