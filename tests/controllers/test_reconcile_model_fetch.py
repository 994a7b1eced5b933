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
    assert progressing["message"] == (
        "revision 1 (v1): 0/2 pods ready; 2 downloading the model (`modelserve status` "
        "shows bytes and time left)")
    assert h.condition("m", "Degraded")[0] == "False"
