"""GPU-utilisation autoscaling end to end: a real HPA controller doing real scaling.

The test exporter reports GPU utilisation for a ModelDeployment's pods; Prometheus
scrapes it; Prometheus Adapter (the rules of charts/prometheus-adapter-values.yaml)
serves it as a pods metric; kube-controller-manager's HPA controller scales the
Deployment the operator's HPA targets (e2e/metrics_stack.py). Times from a utilisation
change to the new replica count are printed (pytest -s shows them).
"""

from __future__ import annotations

import json
import time

import pytest

from e2e.kube import Kubectl, eventually
from e2e.metrics_stack import MetricsStack, expected_replicas, session_stack
from e2e.objects import condition, deployment, modelserve, status, version, wait_status
from modelserve_operator.render.autoscaling import GPU_METRICS, dcgm_query

TARGET = 50
MAX = 8
# Quick reactions for a test: scale up at once; scale down after a 10 s window.
BEHAVIOR = {
    "scaleUp": {"stabilizationWindowSeconds": 0,
                "policies": [{"type": "Percent", "value": 900, "periodSeconds": 1}]},
    "scaleDown": {"stabilizationWindowSeconds": 10,
                  "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]},
}
GPU_METRIC = GPU_METRICS["dcgm"]


@pytest.fixture(scope="session")
def metrics(kubectl: Kubectl):
    yield from session_stack(kubectl)


def autoscaled(name: str, model_version: str, **spec) -> dict:
    return deployment(name, model_version, autoscaling={
        "minReplicas": 1, "maxReplicas": MAX, "targetGPUUtilization": TARGET,
        "behavior": BEHAVIOR}, **spec)


def diagnostics(kubectl: Kubectl, namespace: str, metrics: MetricsStack) -> str:
    hpa = kubectl.run("describe", "hpa", "-n", namespace, check=False).stdout
    served = metrics.pods_metric(namespace, GPU_METRIC)
    return f"\n--- kubectl describe hpa ---\n{hpa}\n--- adapter serves ---\n{served}\n" + \
        metrics.logs()[-4000:]


def wait_replicas(kubectl: Kubectl, namespace: str, name: str, want: int,
                  metrics: MetricsStack, timeout: float = 120) -> float:
    """Wait until Deployment `name` wants and has `want` ready pods; seconds it took."""
    return wait_scaled(kubectl, namespace, name, want, metrics, timeout)[1]


def wait_scaled(kubectl: Kubectl, namespace: str, name: str, want: int,
                metrics: MetricsStack, timeout: float = 120) -> tuple[float, float]:
    """Like wait_replicas; also when the Deployment's replicas first read `want` (the
    HPA's decision, written through the scale subresource): (decided, ready) seconds."""
    started = time.monotonic()
    decided: list[float] = []

    def check():
        dep = kubectl.get("deploy", name, namespace)
        have = (dep["spec"].get("replicas"), dep.get("status", {}).get("readyReplicas"))
        if have[0] == want and not decided:
            decided.append(time.monotonic() - started)
        if have != (want, want):
            raise AssertionError(f"(replicas, ready) = {have}")
        return True
    try:
        eventually(check, timeout=timeout, interval=0.2, what=f"{name} at {want} replicas")
    except AssertionError as error:
        raise AssertionError(f"{error}{diagnostics(kubectl, namespace, metrics)}") from None
    ready = time.monotonic() - started
    return (decided[0] if decided else ready), ready


def wait_autoscaling(kubectl: Kubectl, namespace: str, name: str, timeout: float = 60,
                     **expected) -> dict:
    """Poll until status.autoscaling has every `expected` field."""
    def check():
        scaling = status(kubectl, namespace, name).get("autoscaling") or {}
        return all(scaling.get(k) == v for k, v in expected.items()) and scaling
    return eventually(check, timeout=timeout, what=f"md/{name} status.autoscaling {expected}")


def operator_owns_replicas(dep: dict) -> bool:
    for entry in dep["metadata"].get("managedFields", []):
        if entry["manager"] == "modelserve-operator" and \
                "f:replicas" in entry.get("fieldsV1", {}).get("f:spec", {}):
            return True
    return False


def scaled_down(kubectl: Kubectl, namespace: str, name: str) -> list[str]:
    """The Deployment controller's "Scaled down replica set" Events for `name`."""
    events = json.loads(kubectl.run(
        "get", "events", "-n", namespace, "-o", "json",
        "--field-selector", f"involvedObject.name={name}").stdout)["items"]
    return sorted(f"{e.get('message')} x{e.get('count', 1)}" for e in events
                  if "Scaled down" in e.get("message", ""))


def test_gpu_utilisation_scales_up_then_down(kubectl, namespace, operator, metrics):
    kubectl.apply([version("v1"), autoscaled("llm", "v1")], namespace)
    metrics.exporter.set_load(namespace, "llm", 30)
    try:
        scaling = wait_autoscaling(kubectl, namespace, "llm", timeout=90,
                                   currentGPUUtilization=30, desiredReplicas=1)
        assert scaling["scaleTarget"] == "llm-r1" and scaling["provider"] == "hpa"
        hpa = kubectl.get("hpa", "llm", namespace)
        assert hpa["spec"]["scaleTargetRef"]["name"] == "llm-r1"
        assert hpa["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
        wait_status(kubectl, namespace, "llm", phase="Ready")

        # Up: 250% of one GPU's work over 1 pod (capped at 100%) -> 2 -> 4 -> 5 pods at 50%.
        want = expected_replicas(250, TARGET, 1, MAX)
        metrics.exporter.set_load(namespace, "llm", 250)
        decided, took = wait_scaled(kubectl, namespace, "llm-r1", want, metrics)
        print(f"\n[autoscaling] GPU utilisation 30% -> 100% per pod: 1 -> {want} replicas "
              f"in {took:.1f}s ({decided:.1f}s to the HPA's last step)")
        wait_autoscaling(kubectl, namespace, "llm", desiredReplicas=want,
                         currentGPUUtilization=TARGET)
        st = wait_status(kubectl, namespace, "llm", phase="Ready", ready=f"{want}/{want}")
        assert condition(st, "Degraded") == ("False", "AsExpected")

        # Down: 60% of one GPU over 5 pods is 12% each -> 2 pods, after the window.
        down = expected_replicas(60, TARGET, want, MAX)
        metrics.exporter.set_load(namespace, "llm", 60)
        decided, took = wait_scaled(kubectl, namespace, "llm-r1", down, metrics)
        print(f"[autoscaling] GPU utilisation 50% -> 12% per pod: {want} -> {down} replicas "
              f"in {took:.1f}s ({decided:.1f}s to the HPA's decision; 10s scale-down "
              f"stabilisation window included)")
        wait_autoscaling(kubectl, namespace, "llm", desiredReplicas=down)

        # The HPA owns replicas; the operator never wrote them nor the spec.
        dep = kubectl.get("deploy", "llm-r1", namespace)
        assert not operator_owns_replicas(dep), dep["metadata"]["managedFields"]
        assert kubectl.get("md", "llm", namespace)["metadata"]["generation"] == 1
    finally:
        metrics.exporter.clear(namespace, "llm")


def test_missing_metric_shows_scaling_active_reason_then_recovers(
        kubectl, namespace, operator, metrics):
    # Nothing reports this ModelDeployment's GPUs: the HPA cannot get its pods metric.
    kubectl.apply([version("v1"), autoscaled("dark", "v1")], namespace)
    st = wait_status(kubectl, namespace, "dark", timeout=90, phase="Degraded")
    assert condition(st, "Degraded") == ("True", "FailedGetPodsMetric")
    message = next(c["message"] for c in st["conditions"] if c["type"] == "Degraded")
    assert GPU_METRIC in message and "docs/autoscaling.md" in message
    active = {c["type"]: c for c in st["autoscaling"]["conditions"]}["ScalingActive"]
    assert (active["status"], active["reason"]) == ("False", "FailedGetPodsMetric")
    # Still serving: a missing metric never takes pods away.
    assert condition(st, "Ready")[0] == "True"

    metrics.exporter.set_load(namespace, "dark", 40)
    try:
        st = wait_status(kubectl, namespace, "dark", timeout=90, phase="Ready")
        assert condition(st, "Degraded") == ("False", "AsExpected")
        scaling = wait_autoscaling(kubectl, namespace, "dark", currentGPUUtilization=40)
        active = {c["type"]: c for c in scaling["conditions"]}["ScalingActive"]
        assert active["status"] == "True"
    finally:
        metrics.exporter.clear(namespace, "dark")


def test_canary_while_scaling_leaves_no_orphaned_replicas(
        kubectl, namespace, operator, metrics):
    rollout = {"strategy": "Canary", "scaleDownDelaySeconds": 0,
               "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
    kubectl.apply([version("v1"), version("v2", batch=16),
                   autoscaled("m", "v1", rollout=rollout)], namespace)
    try:
        # 150% of a GPU: 1 -> 2 -> 3 stable pods at 50%.
        metrics.exporter.set_load(namespace, "m", 150)
        stable = expected_replicas(150, TARGET, 1, MAX)
        wait_replicas(kubectl, namespace, "m-r1", stable, metrics)

        # The canary gets ceil(stable x 50%) pods; the HPA keeps scaling the stable only.
        kubectl.apply(autoscaled("m", "v2", rollout=rollout), namespace)
        wait_status(kubectl, namespace, "m", canaryRevision=2, canaryWeight=50,
                    phase="Paused")
        metrics.exporter.set_load(namespace, "m", 300)  # every pod busy: stable grows
        assert kubectl.get("hpa", "m", namespace)["spec"]["scaleTargetRef"]["name"] == "m-r1"

        def sized():
            s = kubectl.get("deploy", "m-r1", namespace)["spec"]["replicas"]
            c = kubectl.get("deploy", "m-r2", namespace)["spec"]["replicas"]
            settled = s > stable and c == -(-s * 50 // 100)
            return settled and (s, c)
        grown, canary = eventually(sized, timeout=120, what="stable grown, canary sized")
        print(f"\n[autoscaling] during the canary: stable {stable} -> {grown}, "
              f"canary {canary} = ceil({grown} x 50%)")

        # Promotion re-points the HPA at the new stable, which keeps its pods.
        downs_before = scaled_down(kubectl, namespace, "m-r2")
        modelserve(kubectl, "promote", "m", "-n", namespace)
        wait_status(kubectl, namespace, "m", timeout=90, revision=2, phase="Ready")
        hpa = eventually(lambda: (h := kubectl.get("hpa", "m", namespace))["spec"][
            "scaleTargetRef"]["name"] == "m-r2" and h, what="HPA re-pointed at m-r2")
        assert hpa["spec"]["minReplicas"] == 1

        def no_orphans():
            deps = {d["metadata"]["name"]: d["spec"].get("replicas", 0)
                    for d in kubectl.get("deploy", namespace=namespace)["items"]}
            pods = kubectl.get("pods", namespace=namespace)["items"]
            revisions = {p["metadata"]["labels"]["modelserve.io/revision"] for p in pods
                         if not p["metadata"].get("deletionTimestamp")}
            desired = (kubectl.get("hpa", "m", namespace).get("status") or {}).get(
                "desiredReplicas")
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            if not (set(deps) == {"m-r2"} and revisions == {"2"}
                    and len(live) == deps["m-r2"] == desired):
                raise AssertionError(f"deployments {deps}, pod revisions {revisions}, "
                                     f"{len(live)} pods, HPA wants {desired}")
            return True
        eventually(no_orphans, timeout=120, what="only the new stable's pods, as the HPA wants")

        # The hand-over kept the promoted Deployment's pods: not scaled down to 1 (or at
        # all: the load only grew) since the promotion.
        assert scaled_down(kubectl, namespace, "m-r2") == downs_before
    finally:
        metrics.exporter.clear(namespace, "m")


def test_every_dcgm_label_variant_reaches_the_hpa_metric_and_the_keda_query(
        kubectl, namespace, operator, metrics):
    """The adapter rules and the rendered KEDA query, for each way dcgm-exporter labels
    a GPU's pod. One variant at a time: a cluster produces one (docs/autoscaling.md)."""
    kubectl.apply([version("v1")] + [deployment(n, "v1", replicas=2)
                                     for n in ("va", "vb", "vc")], namespace)
    for name in ("va", "vb", "vc"):
        wait_status(kubectl, namespace, name, phase="Ready")
    try:
        for name, variant in (("va", "pod"), ("vb", "pod_name"), ("vc", "exported")):
            metrics.exporter.set_load(namespace, name, 120, variant)  # 60% per pod
            pods = {p["metadata"]["name"] for p in kubectl.get(
                "pods", namespace=namespace)["items"]
                if p["metadata"]["labels"]["modelserve.io/deployment"] == name}

            def served(pods=pods):
                got = metrics.pods_metric(namespace, GPU_METRIC)
                if {p: got.get(p) for p in pods} != dict.fromkeys(pods, 60.0):
                    raise AssertionError(f"adapter serves {got}")
                return True
            eventually(served, timeout=60, what=f"adapter serving {variant} labels")
            query = dcgm_query(namespace, f"{name}-r1")
            result = eventually(lambda q=query: metrics.query(q), timeout=30,
                                what=f"KEDA query for {variant}")
            assert [float(r["value"][1]) for r in result] == [120.0], (variant, result)
            metrics.exporter.clear(namespace, name)
    finally:
        for name in ("va", "vb", "vc"):
            metrics.exporter.clear(namespace, name)


def test_scale_to_zero_needs_keda(kubectl, namespace):
    md = deployment("zero", "v1", autoscaling={"minReplicas": 0, "maxReplicas": 2})
    result = kubectl.run("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                         stdin=json.dumps(md), check=False)
    assert result.returncode != 0
    assert "spec.autoscaling.minReplicas 0 needs provider keda" in result.stderr
    md["spec"]["autoscaling"]["provider"] = "keda"
    kubectl.run("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=json.dumps(md))
