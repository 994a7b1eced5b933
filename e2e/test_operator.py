"""The operator against the real control plane: apply -> GPU Deployment -> Ready, and
everything that must not go wrong around it."""

from __future__ import annotations

import signal
import time

from e2e.kube import eventually
from e2e.objects import condition, deployment, status, version, wait_phase


def settle(operator, quiet: float = 2.0, timeout: float = 60) -> float:
    """Wait until the operator has made no write for `quiet` seconds; return the count."""
    def quiet_now():
        before = operator.writes()
        time.sleep(quiet)
        return operator.queue_idle() and operator.writes() == before and (before or -1)
    return eventually(quiet_now, timeout=timeout, interval=0, what="operator to settle")


def test_apply_gives_gpu_deployment_and_ready(kubectl, namespace, operator):
    kubectl.apply([version("resnet-v1"), deployment("resnet", "resnet-v1", replicas=2)],
                  namespace)
    st = wait_phase(kubectl, namespace, "resnet", "Ready")
    assert st["ready"] == "2/2" and st["revision"] == 1 and st["modelVersion"] == "resnet-v1"
    assert st["endpoint"] == f"http://resnet.{namespace}.svc.cluster.local:8080/v2/models/resnet"
    assert condition(st, "Ready") == ("True", "Serving")

    dep = kubectl.get("deploy", "resnet-r1", namespace)
    pod_spec = dep["spec"]["template"]["spec"]
    container = next(c for c in pod_spec["containers"] if c["name"] == "runtime")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"].startswith("/v2/health/")
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in [
        {k: t.get(k) for k in ("key", "operator", "effect")} for t in pod_spec["tolerations"]]
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"

    pods = kubectl.get("pods", namespace=namespace)["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        node = kubectl.get("node", pod["spec"]["nodeName"])
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"

    events = kubectl.run("get", "events", "-n", namespace, "-o",
                         "jsonpath={.items[*].reason}").stdout.split()
    assert "Ready" in events

    kubectl.run("scale", "md", "resnet", "--replicas=3", "-n", namespace)
    st = wait_phase(kubectl, namespace, "resnet", "Ready")
    assert st["ready"] == "3/3"
    assert kubectl.get("deploy", "resnet-r1", namespace)["spec"]["replicas"] == 3


def test_not_enough_gpus_is_degraded_and_others_unaffected(kubectl, namespace, operator):
    kubectl.apply([version("small", gpus=1), deployment("fits", "small")], namespace)
    wait_phase(kubectl, namespace, "fits", "Ready")
    # 3 replicas x 8 H100s: the cluster has two 8-GPU H100 nodes, and `fits` uses one GPU.
    kubectl.apply([version("huge", gpus=8), deployment("greedy", "huge", replicas=3)],
                  namespace)
    st = wait_phase(kubectl, namespace, "greedy", "Degraded")
    assert condition(st, "Degraded") == ("True", "GPUsUnavailable")
    message = next(c["message"] for c in st["conditions"] if c["type"] == "Degraded")
    assert "nvidia.com/gpu" in message
    assert status(kubectl, namespace, "fits")["phase"] == "Ready"
    kubectl.run("delete", "md", "greedy", "-n", namespace)


def test_bad_input_keeps_serving_and_recovers(kubectl, namespace, operator):
    kubectl.apply([version("good"), deployment("svc", "good")], namespace)
    wait_phase(kubectl, namespace, "svc", "Ready")

    kubectl.apply(deployment("svc", "not-there"), namespace)
    st = wait_phase(kubectl, namespace, "svc", "Degraded")
    assert condition(st, "Degraded") == ("True", "ModelVersionNotFound")
    assert "spec.modelVersion" in next(c["message"] for c in st["conditions"]
                                       if c["type"] == "Degraded")
    assert kubectl.get("deploy", "svc-r1", namespace)["status"]["readyReplicas"] == 1

    kubectl.apply(version("mismatch", backend="torch", fmt="onnx"), namespace)
    kubectl.apply(deployment("svc", "mismatch"), namespace)
    st = eventually(lambda: condition(s := status(kubectl, namespace, "svc"), "Degraded")
                    == ("True", "InvalidModelVersion") and s, what="InvalidModelVersion")
    assert "torch" in next(c["message"] for c in st["conditions"] if c["type"] == "Degraded")
    assert kubectl.get("deploy", "svc-r1", namespace)["status"]["readyReplicas"] == 1
    assert kubectl.get("mv", "mismatch", namespace)["status"]["phase"] == "Invalid"

    kubectl.apply(version("not-there"), namespace)  # fixing the input heals it
    kubectl.apply(deployment("svc", "not-there"), namespace)
    st = wait_phase(kubectl, namespace, "svc", "Ready")
    assert st["revision"] == 2
    eventually(lambda: kubectl.get("deploy", "svc-r1", namespace, check=False) is None,
               what="old revision retired")
    history = [(h["revision"], h["outcome"]) for h in st.get("history", [])]
    assert history[0] == (2, "Serving")


def test_template_mode_snapshots_revisions(kubectl, namespace, operator):
    template = version("x")["spec"]
    kubectl.apply(deployment("tpl", template=template), namespace)
    st = wait_phase(kubectl, namespace, "tpl", "Ready")
    assert st["modelVersion"] == "tpl-v1"
    mv = kubectl.get("mv", "tpl-v1", namespace)
    assert mv["metadata"]["ownerReferences"][0]["name"] == "tpl"

    template["runtime"]["maxBatchSize"] = 32
    kubectl.apply(deployment("tpl", template=template), namespace)
    eventually(lambda: status(kubectl, namespace, "tpl").get("modelVersion") == "tpl-v2",
               what="revision 2")
    wait_phase(kubectl, namespace, "tpl", "Ready")
    names = {d["metadata"]["name"] for d in kubectl.get("deploy", namespace=namespace)["items"]}
    eventually(lambda: {d["metadata"]["name"] for d in
                        kubectl.get("deploy", namespace=namespace)["items"]} == {"tpl-r2"},
               what=f"only tpl-r2 left (had {names})")
    spec = kubectl.get("md", "tpl", namespace)["spec"]
    assert spec["template"]["runtime"]["maxBatchSize"] == 32  # the operator never writes spec


def test_delete_removes_everything_without_finalizers(kubectl, namespace, operator):
    kubectl.apply(deployment("gone", template=version("x")["spec"]), namespace)
    wait_phase(kubectl, namespace, "gone", "Ready")
    assert not kubectl.get("md", "gone", namespace)["metadata"].get("finalizers")
    kubectl.run("delete", "md", "gone", "-n", namespace, "--timeout=30s")
    for kind in ("deploy", "svc", "mv", "pods"):
        eventually(lambda kind=kind: not kubectl.get(kind, namespace=namespace)["items"],
                   timeout=60, what=f"{kind} garbage-collected")


def test_restart_makes_no_duplicates_and_no_writes(kubectl, namespace, operator):
    # Write counts are cluster-wide: let earlier tests' namespaces finish terminating.
    eventually(lambda: [n["metadata"]["name"] for n in kubectl.get("ns")["items"]
                        if n["metadata"]["name"].startswith("e2e-")] == [namespace],
               timeout=120, what="other test namespaces gone")
    kubectl.apply([version("steady"), deployment("a", "steady"),
                   deployment("b", template=version("y")["spec"], replicas=2)], namespace)
    wait_phase(kubectl, namespace, "a", "Ready")
    wait_phase(kubectl, namespace, "b", "Ready")
    settle(operator)

    # Steady state: poking every object (a label is not a spec change) causes no write.
    before = operator.writes()
    kubectl.run("label", "md", "a", "b", "poke=1", "-n", namespace)
    kubectl.run("annotate", "deploy", "--all", "poke=1", "-n", namespace)
    time.sleep(3)
    settle(operator)
    assert operator.writes() == before, operator.writes_by()

    snapshot = sorted(d["metadata"]["name"] for d in
                      kubectl.get("deploy,svc,mv", namespace=namespace)["items"])
    operator.kill(signal.SIGKILL)
    operator.start()
    time.sleep(3)
    settle(operator)
    assert operator.writes() == 0, operator.writes_by()
    after = sorted(d["metadata"]["name"] for d in
                   kubectl.get("deploy,svc,mv", namespace=namespace)["items"])
    assert after == snapshot
    assert status(kubectl, namespace, "a")["phase"] == "Ready"
