"""A model that cannot be fetched: the reason reaches status through the real store and
reconcile (the pod's fetch init container status survives the store's slimming), and a
canary whose fetch failed is rolled back at once instead of at the progress deadline."""

from __future__ import annotations

import asyncio

from tests.controllers.fake_api import NS, Harness, model_deployment, version

CANARY = {"strategy": "Canary", "scaleDownDelaySeconds": 30, "progressDeadlineSeconds": 600,
          "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
DENIED = ("fetch failed: access denied to s3://models/m.onnx (InvalidAccessKeyId): check the "
          "keys from the Secret mounted at /var/run/secrets/modelserve/storage")


def failed_fetch_pod(revision: int, message: str) -> dict:
    terminated = {"terminated": {"exitCode": 1, "reason": "Error", "message": message}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"m-r{revision}-abc", "namespace": NS,
                         "labels": {"modelserve.io/deployment": "m",
                                    "modelserve.io/pool": "primary",
                                    "modelserve.io/revision": str(revision)}},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "fetch-model", "restartCount": 1, "lastState": terminated,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}


def test_a_fetch_failure_is_degraded_with_the_fetch_message():
    h = Harness(never_ready={"m-r1"})
    h.api.put(version("v1"))
    h.api.put(model_deployment("m", "v1", replicas=1))
    h.api.put(failed_fetch_pod(1, DENIED))
    asyncio.run(h.settle("m"))
    assert h.condition("m", "Degraded") == ("True", "ModelFetchFailed")
    message = next(c["message"] for c in h.status("m")["conditions"]
                   if c["type"] == "Degraded")
    assert message == f"pod m-r1-abc cannot fetch its model: {DENIED}"


def test_a_canary_whose_fetch_failed_is_rolled_back_without_waiting_for_the_deadline():
    h = Harness(never_ready={"m-r2"})
    h.api.put(version("v1"))
    h.api.put(version("v2"))
    h.api.put(model_deployment("m", "v1", rollout=CANARY))
    asyncio.run(h.settle("m"))
    h.api.put(model_deployment("m", "v2", rollout=CANARY))
    h.api.put(failed_fetch_pod(2, "fetch failed: SHA-256 mismatch for s3://models/m.onnx"))
    asyncio.run(h.settle("m", max_wait=5))  # far less than the 600 s deadline
    st = h.status("m")
    assert st["revision"] == 1 and st.get("canaryRevision") is None, st
    assert h.condition("m", "Degraded")[0] == "True"


def test_pods_downloading_their_model_show_in_progressing():
    h = Harness(never_ready={"m-r1"})
    h.api.put(version("v1"))
    h.api.put(model_deployment("m", "v1", replicas=2))
    for n in (1, 2):
        pod = failed_fetch_pod(1, "")
        pod["metadata"]["name"] = f"m-r1-{n}"
        pod["status"]["initContainerStatuses"][0].update(
            state={"running": {"startedAt": "2026-11-30T06:00:00Z"}}, lastState={},
            restartCount=0)
        h.api.put(pod)
    asyncio.run(h.settle("m"))
    progressing = next(c for c in h.status("m")["conditions"] if c["type"] == "Progressing")
    assert progressing["message"] == "revision 1 (v1): 0/2 pods ready; 2 downloading the model"
    assert h.condition("m", "Degraded")[0] == "False"


class CannedProgress:
    """The pods' progress endpoints: what each answers now, and who was asked."""

    def __init__(self) -> None:
        self.answers: dict[str, dict] = {}
        self.asked: list[list[tuple[str, str, int]]] = []

    async def __call__(self, targets):
        targets = list(targets)
        self.asked.append(targets)
        return {pod: self.answers[pod] for pod, _, _ in targets if pod in self.answers}


def downloading_pod(n: int) -> dict:
    pod = failed_fetch_pod(1, "")
    pod["metadata"]["name"] = f"m-r1-{n}"
    pod["status"]["podIP"] = f"10.88.0.{10 + n}"
    pod["status"]["initContainerStatuses"][0].update(
        state={"running": {"startedAt": "2026-11-30T06:00:00Z"}}, lastState={}, restartCount=0)
    return pod


def download(done_mib: int, total_mib: int = 1000, rate_mib: float = 10.0) -> dict:
    mib = 1 << 20
    return {"phase": "downloading", "unit": "bytes", "done": done_mib * mib,
            "total": total_mib * mib, "ratePerSecond": rate_mib * mib,
            "secondsLeft": (total_mib - done_mib) / rate_mib}


def test_bytes_done_and_time_left_reach_status_rate_limited():
    h = Harness(never_ready={"m-r1"})
    progress = h.ctx.read_progress = CannedProgress()
    h.api.put(version("v1"))
    h.api.put(model_deployment("m", "v1", replicas=2))
    for n in (1, 2):
        h.api.put(downloading_pod(n))
    progress.answers = {"m-r1-1": download(500), "m-r1-2": download(200)}
    asyncio.run(h.settle("m"))
    assert progress.asked[-1] == [("m-r1-1", "10.88.0.11", 8080), ("m-r1-2", "10.88.0.12", 8080)]
    shown = h.status("m")["modelProgress"]
    assert shown["message"] == ("downloading 200.0 MiB of 1000.0 MiB (20%), 10.0 MiB/s, "
                                "about 80 s left (slowest of 2 pods)")
    assert (shown["done"], shown["total"], shown["secondsLeft"], shown["pods"]) == (
        200 << 20, 1000 << 20, 80, 2)
    progressing = next(c for c in h.status("m")["conditions"] if c["type"] == "Progressing")
    assert progressing["message"].endswith("0/2 pods ready; " + shown["message"])

    # Moved by 2% a second later: not worth a write.
    writes = len(h.api.actions)
    progress.answers["m-r1-2"] = download(220)
    h.clock.now += 1
    asyncio.run(h.reconcile("m"))
    assert len(h.api.actions) == writes
    # Moved by 5%: written.
    progress.answers["m-r1-2"] = download(250)
    asyncio.run(h.reconcile("m"))
    assert h.status("m")["modelProgress"]["done"] == 250 << 20
    # Hardly moved, but the stored one is 10 s old: refreshed.
    writes = len(h.api.actions)
    progress.answers["m-r1-2"] = download(251)
    h.clock.now += 10
    asyncio.run(h.reconcile("m"))
    assert len(h.api.actions) == writes + 1
    assert h.status("m")["modelProgress"]["done"] == 251 << 20


def test_progress_is_read_again_while_pods_wait_and_gone_once_they_are_ready():
    h = Harness(never_ready={"m-r1"})
    progress = h.ctx.read_progress = CannedProgress()
    h.api.put(version("v1"))
    h.api.put(model_deployment("m", "v1", replicas=1))
    h.api.put(downloading_pod(1))
    progress.answers = {"m-r1-1": download(100)}
    assert asyncio.run(h.reconcile("m")) <= 5.0  # no watch event says bytes moved
    assert "modelProgress" in h.status("m")
    h.never_ready.clear()
    pod = h.api.objects[("Pod", NS, "m-r1-1")]
    pod["status"].update(phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    asyncio.run(h.settle("m"))
    assert "modelProgress" not in h.status("m")
    assert h.status("m")["phase"] == "Ready"
    # Steady state: nobody is asked, nothing is written.
    asked, writes = len(progress.asked), len(h.api.actions)
    asyncio.run(h.settle("m"))
    assert (len(progress.asked), len(h.api.actions)) == (asked, writes)


def test_a_pod_that_does_not_answer_yet_is_asked_again():
    """The fetch may not serve its progress yet at the first ask (its init container just
    started): the reconcile still comes back, and the next answer reaches status."""
    h = Harness(never_ready={"m-r1"})
    progress = h.ctx.read_progress = CannedProgress()
    h.api.put(version("v1"))
    h.api.put(model_deployment("m", "v1", replicas=1))
    h.api.put(downloading_pod(1))
    progress.answers = {}
    assert asyncio.run(h.reconcile("m")) <= 5.0
    assert "modelProgress" not in h.status("m")
    progress.answers = {"m-r1-1": download(100)}
    h.clock.now += 5
    asyncio.run(h.reconcile("m"))
    assert h.status("m")["modelProgress"]["done"] == 100 << 20
