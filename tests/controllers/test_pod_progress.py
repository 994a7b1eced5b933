"""status.modelProgress from the pods' reports: which pods are asked, which one is shown,
how it reads, and when a new one replaces the stored one."""

import datetime

import pytest

from modelserve_operator.controllers.decisions.pod_progress import (
    describe,
    summarise,
    targets,
)

MIB = 1 << 20
NOW = 1_000_000.0
NOW_TEXT = "1970-01-12T13:46:40Z"


def rfc3339(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name, ip="10.0.0.1", ready=False, fetch="running", runtime=None, deleting=False):
    status = {"phase": "Pending" if fetch == "running" else "Running", "podIP": ip,
              "conditions": [{"type": "Ready", "status": str(ready)}],
              "initContainerStatuses": [{"name": "fetch-model", "state": {fetch: {}}}],
              "containerStatuses": [{"state": {runtime: {}}}] if runtime else []}
    meta = {"name": name, **({"deletionTimestamp": "x"} if deleting else {})}
    return {"metadata": meta, "status": status}


def test_only_pods_on_their_way_with_a_running_container_and_an_ip_are_asked():
    pods = [pod("fetching"), pod("loading", fetch="terminated", runtime="running"),
            pod("ready", ready=True, fetch="terminated", runtime="running"),
            pod("no-ip", ip=None), pod("crashed", fetch="terminated", runtime="waiting"),
            pod("leaving", deleting=True)]
    assert [t.pod for t in targets(pods, 8080)] == ["fetching", "loading"]


@pytest.mark.parametrize("report,pods,text", [
    ({"phase": "downloading", "done": 3 * MIB, "ratePerSecond": MIB}, 1,
     "downloading 3.0 MiB, 1.0 MiB/s"),
    ({"phase": "building engine", "unit": "layers", "done": 3, "total": 12,
      "secondsLeft": 90}, 2, "building engine 3 layers of 12 layers (25%), about 90 s "
     "left (slowest of 2 pods)"),
    ({"phase": "loading the model"}, 1, "loading the model"),
    ({"phase": "building engine", "elapsedSeconds": 40}, 2,
     "building engine, 40 s (slowest of 2 pods)"),
    ({"phase": "downloading", "done": 3 * MIB, "elapsedSeconds": 3}, 1, "downloading 3.0 MiB"),
])
def test_describe(report, pods, text):
    assert describe(report, pods) == text


def test_the_slowest_pod_is_shown_a_download_before_a_load():
    reports = {"a": {"phase": "loading the model"},
               "b": {"phase": "downloading", "done": 9, "total": 10},
               "c": {"phase": "downloading", "done": 2, "total": 10}}
    shown = summarise(reports, 3, None, NOW, NOW_TEXT)
    assert (shown["done"], shown["pods"], shown["updatedAt"]) == (2, 3, NOW_TEXT)


def test_nothing_without_answers():
    assert summarise({}, 2, None, NOW, NOW_TEXT) is None
    assert summarise({"a": {}}, 2, None, NOW, NOW_TEXT) is None


@pytest.mark.parametrize("change,written", [
    ({"done": 24}, False),                       # 4% in 5 s
    ({"done": 25}, True),                        # 5%
    ({"phase": "loading the model"}, True),      # another phase
    ({"pods": 3}, True),                         # another pod count
    ({"age": 10}, True),                         # the stored one is 10 s old
])
def test_a_new_summary_replaces_the_stored_one_only_when_worth_a_write(change, written):
    stored = summarise({"a": {"phase": "downloading", "done": 20, "total": 100}}, 2, None,
                       NOW - change.get("age", 5), rfc3339(NOW - change.get("age", 5)))
    report = {"phase": change.get("phase", "downloading"), "done": change.get("done", 21),
              "total": 100}
    shown = summarise({"a": report}, change.get("pods", 2), stored, NOW, NOW_TEXT)
    assert (shown is not stored) == written
