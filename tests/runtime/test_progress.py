"""A pod's progress: what the loader reports, what its endpoint answers, and what the
operator's reader makes of a real endpoint (and of one that does not answer)."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

import pytest

from modelserve_operator.controllers.cluster.pod_progress import PodProgressReader
from modelserve_runtime import progress
from modelserve_runtime.contract import PROGRESS_PATH

MIB = 1 << 20


def test_rate_and_time_left_count_from_the_start_of_the_phase_until_asked():
    now = [100.0]
    clock = lambda: now[0]  # noqa: E731
    progress.report("downloading", 0, 100 * MIB, clock=clock)
    now[0] += 4
    progress.report("downloading", 40 * MIB, 100 * MIB, clock=clock)
    assert progress.current(clock) == {"phase": "downloading", "unit": "bytes",
                                       "done": 40 * MIB, "total": 100 * MIB,
                                       "elapsedSeconds": 4,
                                       "ratePerSecond": 10 * MIB, "secondsLeft": 6.0}
    now[0] += 4  # stalled: no report for 4 s, the rate halves, the time left doubles
    assert progress.current(clock)["secondsLeft"] == 12.0
    progress.report("building engine", 1, 12, unit="layers", clock=clock)
    assert progress.current(clock) == {"phase": "building engine", "unit": "layers",
                                       "done": 1, "total": 12, "elapsedSeconds": 0}


def test_the_engine_builds_seconds_are_counted_from_the_start_of_its_phase(monkeypatch):
    from modelserve_runtime import model

    now = [100.0]
    real_report = progress.report
    monkeypatch.setattr(progress, "report",
                        lambda *a, **kw: real_report(*a, clock=lambda: now[0], **kw))
    model.report_engine_progress("import torch", 2.4)
    now[0] += 3
    model.report_engine_progress("read model", 5.4)  # still loading the model
    assert progress.current(lambda: now[0]) == {
        "phase": "loading the model", "unit": None, "done": None, "total": None,
        "elapsedSeconds": 3}
    model.report_engine_progress("building engine", 6.0)
    now[0] += 40.7  # no report for 40 s: the seconds still grow when asked
    assert progress.current(lambda: now[0]) == {
        "phase": "building engine", "unit": None, "done": None, "total": None,
        "elapsedSeconds": 40}
    model.report_engine_progress("ready", 55.0)  # the model says "loaded" itself
    assert progress.current()["phase"] == "building engine"


def test_nothing_reported_reads_empty_and_a_report_never_raises(tmp_path, monkeypatch):
    assert progress.current() == {}
    monkeypatch.setenv(progress.FILE_ENV, str(tmp_path / "no-such-dir" / "p.json"))
    progress.report("loading the model")  # cannot be written: the load goes on
    assert progress.current() == {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def endpoint():
    server = progress.serve_in_background(_free_port(), host="127.0.0.1")
    assert server is not None
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_fetch_containers_endpoint_answers_the_latest_report(endpoint):
    progress.report("downloading", 5 * MIB, 10 * MIB)
    with urllib.request.urlopen(f"http://127.0.0.1:{endpoint}{PROGRESS_PATH}") as answer:
        assert json.load(answer)["done"] == 5 * MIB
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(f"http://127.0.0.1:{endpoint}/other")
    # The port is taken (here by the first one): no second endpoint, and no error.
    assert progress.serve_in_background(endpoint, host="127.0.0.1") is None


def test_the_operators_reader_asks_real_endpoints_and_forgets_silent_ones(endpoint):
    progress.report("downloading", 3 * MIB, 10 * MIB)
    now = [0.0]
    reader = PodProgressReader(clock=lambda: now[0])
    silent = _free_port()  # nothing listens there
    targets = [("pod-a", "127.0.0.1", endpoint), ("pod-b", "127.0.0.1", silent)]
    answers = asyncio.run(reader(targets))
    assert list(answers) == ["pod-a"] and answers["pod-a"]["done"] == 3 * MIB
    # Asked again at once: the answer is reused, the silent pod not asked again.
    progress.report("downloading", 4 * MIB, 10 * MIB)
    assert asyncio.run(reader(targets))["pod-a"]["done"] == 3 * MIB
    now[0] += 3
    assert asyncio.run(reader(targets))["pod-a"]["done"] == 4 * MIB
