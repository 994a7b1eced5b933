"""Canary rollouts on the real control plane with GPU versions on kwok's fake GPU nodes:
weights, pauses, promote, abort, automatic rollback, retained revisions, overlapping
versions and operator restarts (real pods and traffic: e2e/test_real_traffic.py)."""

from __future__ import annotations

import signal

from e2e.kube import Kubectl, eventually
from e2e.objects import (
    condition,
    deployment,
    modelserve,
    replicas,
    route_weights,
    status,
    timed,
    version,
    wait_phase,
    wait_status,
)

PAUSED_CANARY = {"strategy": "Canary", "canary": {"steps": [
    {"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}}
GATEWAY = {"provider": "gateway-api", "gatewayRef": {"name": "inference"}}


def start_canary(kubectl: Kubectl, namespace: str, name: str = "m", **spec) -> None:
    spec.setdefault("rollout", PAUSED_CANARY)
    kubectl.apply([version("v1"), version("v2", batch=16),
                   deployment(name, "v1", replicas=4, **spec)], namespace)
    wait_phase(kubectl, namespace, name, "Ready")
    kubectl.apply(deployment(name, "v2", replicas=4, **spec), namespace)
    wait_status(kubectl, namespace, name, canaryRevision=2, canaryWeight=10, phase="Paused")


def test_canary_10_50_100_with_httproute_weights(kubectl, namespace, operator):
    start_canary(kubectl, namespace, traffic=GATEWAY)
    assert route_weights(kubectl, namespace, "m") == {"m-r1": 90, "m-r2": 10}
    assert (replicas(kubectl, namespace, "m-r2"), replicas(kubectl, namespace, "m-r1")) == (1, 4)
    assert condition(status(kubectl, namespace, "m"), "Progressing") == ("True", "Paused")

    modelserve(kubectl, "promote", "m", "-n", namespace)
    wait_status(kubectl, namespace, "m", canaryWeight=50, phase="Paused")
    assert route_weights(kubectl, namespace, "m") == {"m-r1": 50, "m-r2": 50}
    assert (replicas(kubectl, namespace, "m-r2"), replicas(kubectl, namespace, "m-r1")) == (2, 2)

    modelserve(kubectl, "promote", "m", "-n", namespace)
    st = wait_status(kubectl, namespace, "m", revision=2, phase="Ready")
    assert st.get("canaryRevision") is None
    assert route_weights(kubectl, namespace, "m") == {"m-r2": 100}
    assert replicas(kubectl, namespace, "m-r2") == 4
    assert replicas(kubectl, namespace, "m-r1") == 2  # kept for scaleDownDelaySeconds
    assert "status" not in modelserve(kubectl, "status", "m", "-n", namespace).stderr
    # The spec is the user's: the operator never wrote it.
    md = kubectl.get("md", "m", namespace)
    assert md["metadata"]["generation"] == 2 and md["spec"]["modelVersion"] == "v2"


def test_abort_sends_traffic_back_and_scales_canary_to_zero(kubectl, namespace, operator):
    start_canary(kubectl, namespace, traffic=GATEWAY)
    elapsed, _ = timed(lambda: (modelserve(kubectl, "abort", "m", "-n", namespace),
                                eventually(lambda: route_weights(kubectl, namespace, "m")
                                           == {"m-r1": 100}, what="all weight on stable")))
    print(f"abort -> 100% on stable: {elapsed:.2f}s")
    st = wait_phase(kubectl, namespace, "m", "Degraded")
    assert condition(st, "Degraded") == ("True", "Aborted")
    assert st["revision"] == 1 and st["abortedRevision"] == 2
    eventually(lambda: replicas(kubectl, namespace, "m-r2") in (0, None), what="canary at 0")
    assert kubectl.get("md", "m", namespace)["spec"]["modelVersion"] == "v2"  # spec untouched
    assert [e["outcome"] for e in st["history"]][:2] == ["Serving", "RolledBack"]
    events = kubectl.run("get", "events", "-n", namespace, "-o",
                         "jsonpath={.items[*].reason}").stdout.split()
    assert "Aborted" in events

    kubectl.apply(version("v3"), namespace)  # a new spec change starts a new rollout
    kubectl.apply(deployment("m", "v3", replicas=4, rollout=PAUSED_CANARY, traffic=GATEWAY),
                  namespace)
    wait_status(kubectl, namespace, "m", canaryRevision=3, canaryWeight=10, phase="Paused")


def test_switching_traffic_provider_deletes_the_old_route(kubectl, namespace, operator):
    kubectl.apply([version("v1"), deployment("m", "v1", traffic=GATEWAY)], namespace)
    wait_status(kubectl, namespace, "m", phase="Ready", trafficProvider="gateway-api")
    assert kubectl.get("httproute", "m", namespace)

    kubectl.apply(deployment("m", "v1", traffic={"provider": "service"}), namespace)
    wait_status(kubectl, namespace, "m", phase="Ready", trafficProvider="service")
    # A stale HTTPRoute on the Gateway would keep sending requests to the revisions.
    eventually(lambda: not kubectl.run("get", "httproute", "-n", namespace, "-o",
                                       "name").stdout.strip(), what="HTTPRoute deleted")
    assert kubectl.get("svc", "m", namespace)  # the user-facing Service stays
    events = kubectl.run("get", "events", "-n", namespace, "-o",
                         "jsonpath={.items[*].reason}").stdout.split()
    assert "TrafficProviderChanged" in events


def test_canary_that_never_gets_ready_is_rolled_back(kubectl, namespace, operator):
    rollout = {**PAUSED_CANARY, "progressDeadlineSeconds": 5}
    kubectl.apply([version("ok"), deployment("d", "ok", replicas=2, rollout=rollout)],
                  namespace)
    wait_phase(kubectl, namespace, "d", "Ready")
    # 8 GPUs per pod of a product no node has: the canary can never be scheduled.
    kubectl.apply([version("bad", gpus=8, product="NVIDIA-B200"),
                   deployment("d", "bad", replicas=2, rollout=rollout)], namespace)
    # First the canary's pods are reported unschedulable, then the deadline rolls it back.
    st = eventually(lambda: condition(s := status(kubectl, namespace, "d"), "Degraded")
                    == ("True", "ProgressDeadlineExceeded") and s, timeout=90,
                    what="automatic rollback")
    assert st["revision"] == 1
    assert kubectl.get("deploy", "d-r1", namespace)["status"]["readyReplicas"] == 2
    eventually(lambda: replicas(kubectl, namespace, "d-r2") in (0, None), what="canary at 0")


def test_twelve_versions_keep_ten_and_rollback(kubectl, namespace, operator):
    rollout = {"strategy": "Rolling", "scaleDownDelaySeconds": 0}
    template = version("t")["spec"]
    for n in range(1, 13):
        template["runtime"]["maxBatchSize"] = n
        kubectl.apply(deployment("h", template=template, rollout=rollout), namespace)
        wait_status(kubectl, namespace, "h", revision=n, phase="Ready")
    eventually(lambda: len(kubectl.get("mv", namespace=namespace)["items"]) == 10,
               what="ten retained ModelVersions")
    names = sorted(mv["metadata"]["name"] for mv in kubectl.get("mv", namespace=namespace)[
        "items"])
    assert names == sorted(f"h-v{n}" for n in range(3, 13))
    st = status(kubectl, namespace, "h")
    assert [e["revision"] for e in st["history"]] == list(range(12, 2, -1))
    table = modelserve(kubectl, "history", "h", "-n", namespace).stdout
    assert "12 *" in table and "h-v3" in table and "h-v2" not in table

    out = modelserve(kubectl, "rollback", "h", "--to-revision", "3", "--wait", "-n",
                     namespace).stdout
    print(out)
    st = wait_status(kubectl, namespace, "h", revision=3, phase="Ready")
    assert st["modelVersion"] == "h-v3"
    failed = modelserve(kubectl, "rollback", "h", "--to-revision", "1", "-n", namespace,
                        check=False)
    assert failed.returncode == 1
    assert "revision 1 of h is not retained" in failed.stderr and "3 (h-v3)" in failed.stderr


def test_new_version_during_canary_replaces_it_cleanly(kubectl, namespace, operator):
    start_canary(kubectl, namespace)
    kubectl.apply([version("v3"), deployment("m", "v3", replicas=4, rollout=PAUSED_CANARY)],
                  namespace)
    wait_status(kubectl, namespace, "m", canaryRevision=3, canaryWeight=10, phase="Paused")
    eventually(lambda: sorted(d["metadata"]["name"] for d in kubectl.get(
        "deploy", namespace=namespace)["items"]) == ["m-r1", "m-r3"], what="r2 removed")
    services = sorted(s["metadata"]["name"] for s in kubectl.get("svc", namespace=namespace)[
        "items"])
    assert services == ["m", "m-r1", "m-r3"]


def test_rollout_survives_operator_sigkill(kubectl, namespace, operator):
    start_canary(kubectl, namespace, traffic=GATEWAY)
    before = sorted(o["metadata"]["name"] for o in kubectl.get(
        "deploy,svc,httproute", namespace=namespace)["items"])
    operator.kill(signal.SIGKILL)
    operator.start()
    modelserve(kubectl, "promote", "m", "-n", namespace)
    wait_status(kubectl, namespace, "m", canaryWeight=50, currentStep=3, phase="Paused")
    after = sorted(o["metadata"]["name"] for o in kubectl.get(
        "deploy,svc,httproute", namespace=namespace)["items"])
    assert after == before
    assert route_weights(kubectl, namespace, "m") == {"m-r1": 50, "m-r2": 50}


# The fallback and the metric analysis run against real pods and real runtime metrics in
# e2e/test_real_traffic.py.
