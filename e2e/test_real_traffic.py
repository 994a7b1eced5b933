"""Rollouts under real traffic: real runtime pods on the real node serve real ONNX models
while a load generator sends requests through the user-facing Service (kube-proxy), and
every failed request is counted per phase.

The target is 0 failed requests in every phase but those where the user asked for an
outage (Recreate) or where a broken canary answers its share with errors until the
analysis catches it; those phases report their count and gap instead. Each test prints
its table; `hack/bench-rollout-traffic` collects them (MODELSERVE_TRAFFIC_REPORT).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from e2e.kube import Kubectl, eventually, kill_container
from e2e.models import ModelStore, expected_y
from e2e.objects import condition, deployment, modelserve, replicas, status, wait_status
from e2e.traffic import Traffic

API = "modelserve.io/v1alpha1"
# Probes every second: rollout steps wait on pods turning Ready.
FAST_PROBES = {"startup": {"periodSeconds": 1}, "readiness": {"periodSeconds": 1}}
PAUSED_CANARY = {"strategy": "Canary", "scaleDownDelaySeconds": 5, "progressDeadlineSeconds": 90,
                 "canary": {"steps": [{"setWeight": 10}, {"pause": {}},
                                      {"setWeight": 50}, {"pause": {}}]}}


def real_version(models: ModelStore, name: str, model: str, sha256: str | None = None) -> dict:
    """A CPU ModelVersion of one of the store's models: a real pod on real-0 serves it."""
    return {"apiVersion": API, "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": {"uri": models.url(model), "format": "onnx",
                               "sha256": sha256 or models.sha256(model)},
                     "runtime": {"backend": "onnxruntime", "maxBatchSize": 8},
                     "resources": {"gpu": {"count": 0}, "cpu": "50m", "memory": "400Mi"}}}


def real_deployment(name: str, version: str, replicas: int = 4, **spec) -> dict:
    spec.setdefault("probes", FAST_PROBES)
    return deployment(name, version, replicas=replicas, **spec)


def service_url(kubectl: Kubectl, namespace: str, name: str) -> str:
    svc = kubectl.get("svc", name, namespace)
    port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "http")
    return f"http://{svc['spec']['clusterIP']}:{port}"


def ready_pods(kubectl: Kubectl, namespace: str, deployment_name: str) -> int:
    dep = kubectl.get("deploy", deployment_name, namespace, check=False)
    return 0 if dep is None else dep.get("status", {}).get("readyReplicas", 0)


def report(traffic: Traffic, title: str) -> str:
    table = f"\n## {title}\n{traffic.table()}\n"
    print(table)
    path = os.environ.get("MODELSERVE_TRAFFIC_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(table)
    return table


@pytest.fixture
def traffic_for(kubectl, namespace):
    """Starts traffic to a ModelDeployment's user-facing Service; stops it afterwards."""
    started: list[Traffic] = []

    def start(name: str) -> Traffic:
        traffic = Traffic(service_url(kubectl, namespace, name), name).start()
        started.append(traffic)
        traffic.wait_until_serving()
        return traffic
    yield start
    for traffic in started:
        traffic.stop()


def serve_v1(kubectl, namespace, models, name="m", replicas=4, **spec) -> None:
    kubectl.apply([real_version(models, "v1", "good-v1"),
                   real_deployment(name, "v1", replicas=replicas, **spec)], namespace)
    wait_status(kubectl, namespace, name, phase="Ready", timeout=180)


def serve_v1_then_canary(kubectl, namespace, models, traffic_for, hold: float = 0):
    """v1 serving under traffic, then v2 as a canary paused at 10 % (one pod of five);
    returns the traffic and that phase's counts (`hold` seconds more of them)."""
    serve_v1(kubectl, namespace, models, rollout=PAUSED_CANARY)
    traffic = traffic_for("m")
    kubectl.apply(real_version(models, "v2", "good-v2"), namespace)
    with traffic.phase("canary to 10% (1 of 5 pods)") as p10:
        kubectl.apply(real_deployment("m", "v2", rollout=PAUSED_CANARY), namespace)
        wait_status(kubectl, namespace, "m", canaryWeight=10, phase="Paused", timeout=120)
        time.sleep(hold)
    return traffic, p10


def assert_no_failures(traffic: Traffic, *, allowed: tuple[str, ...] = ()) -> None:
    failing = {p.name: p.failed for p in traffic.phases if p.failed and p.name not in allowed}
    assert not failing, f"failed requests per phase: {failing}\n{traffic.table()}"


def test_real_model_answers_through_the_service(kubectl, namespace, operator, models):
    """The model really loads: fetched over HTTP, sha256-checked, served by the runtime."""
    serve_v1(kubectl, namespace, models, replicas=1)
    pod = kubectl.get("pods", namespace=namespace)["items"][0]
    assert pod["spec"]["nodeName"] == "real-0"
    assert "nvidia.com/gpu" not in pod["spec"]["containers"][0].get("resources", {}).get(
        "limits", {})
    fetch = pod["status"]["initContainerStatuses"][0]
    assert fetch["state"]["terminated"]["exitCode"] == 0
    result = modelserve(kubectl, "predict", "m", "-n", namespace, "--input",
                        "x=[[50,1,2,3]]")
    lines = result.stdout.splitlines()
    assert lines[0] == "model m version v1", result.stdout
    y = json.loads(next(line for line in lines if line.startswith("y ")).split(": ", 1)[1])
    assert y[0] == pytest.approx(expected_y("good-v1")), result.stdout


def test_canary_10_50_100_loses_no_request(kubectl, namespace, operator, models, traffic_for):
    # Six seconds more at 10 %: a few hundred requests to see the split.
    traffic, p10 = serve_v1_then_canary(kubectl, namespace, models, traffic_for, hold=6)
    with traffic.phase("promote to 50%"):
        modelserve(kubectl, "promote", "m", "-n", namespace)
        wait_status(kubectl, namespace, "m", canaryWeight=50, phase="Paused", timeout=120)
        eventually(lambda: replicas(kubectl, namespace, "m-r1") == 2
                   and ready_pods(kubectl, namespace, "m-r1") == 2
                   and ready_pods(kubectl, namespace, "m-r2") == 2, what="2 stable, 2 canary")
    # The split is read once both sides are at 2 pods: while the stable scales down the
    # ratio moves from 1:4 to 2:2, and on a loaded machine that transition is slow.
    with traffic.phase("at 50%") as p50:
        time.sleep(6)
    with traffic.phase("promote to 100%"):
        modelserve(kubectl, "promote", "m", "-n", namespace)
        wait_status(kubectl, namespace, "m", revision=2, phase="Ready", timeout=120)
    with traffic.phase("old stable scaled down (drain)") as p_last:
        eventually(lambda: not [p for p in kubectl.get("pods", namespace=namespace)["items"]
                                if p["metadata"]["labels"].get("modelserve.io/revision") == "1"],
                   timeout=120, what="revision 1's pods gone")
        time.sleep(2)
    report(traffic, "canary 10 -> 50 -> 100 (service provider: weights as replica ratios)")
    assert_no_failures(traffic)
    # The service provider's weights are replica ratios: 1 canary pod beside 4 stable.
    assert 5 < p10.split().get("v2", 0) < 40, p10.split()
    assert 30 < p50.split().get("v2", 0) < 70, p50.split()
    # Revision 1's pods still answer what reached them during their preStop window.
    assert p_last.split().get("v2", 0) > 90, p_last.split()


def test_abort_and_rollback_lose_no_request(kubectl, namespace, operator, models, traffic_for):
    traffic, _ = serve_v1_then_canary(kubectl, namespace, models, traffic_for)
    with traffic.phase("modelserve abort") as aborted:
        modelserve(kubectl, "abort", "m", "-n", namespace)
        st = wait_status(kubectl, namespace, "m", phase="Degraded", timeout=60)
        assert condition(st, "Degraded") == ("True", "Aborted")
        eventually(lambda: ready_pods(kubectl, namespace, "m-r2") == 0, what="canary gone")
        time.sleep(3)
    assert aborted.split() == {"v1": 100.0} or aborted.versions["v2"] < aborted.versions["v1"]

    kubectl.apply(real_version(models, "v3", "good-v3"), namespace)
    with traffic.phase("new version v3 promoted fully"):
        kubectl.apply(real_deployment("m", "v3", rollout=PAUSED_CANARY), namespace)
        wait_status(kubectl, namespace, "m", canaryRevision=3, phase="Paused", timeout=120)
        modelserve(kubectl, "promote", "m", "-n", namespace, "--full")
        wait_status(kubectl, namespace, "m", revision=3, phase="Ready", timeout=120)
    with traffic.phase("modelserve rollback --to-revision 1") as rolled:
        modelserve(kubectl, "rollback", "m", "-n", namespace, "--to-revision", "1")
        # Depending on the strategy the rollback may walk the canary steps: finish them.
        def on_revision_1():
            st = status(kubectl, namespace, "m")
            if st.get("phase") == "Paused":
                modelserve(kubectl, "promote", "m", "-n", namespace, "--full")
            return st.get("phase") == "Ready" and st.get("modelVersion") == "v1"
        eventually(on_revision_1, timeout=180, what="serving v1 again")
        eventually(lambda: replicas(kubectl, namespace, "m-r3") in (0, None), timeout=60,
                   what="v3 scaled down")
        time.sleep(3)
    report(traffic, "abort mid-canary, then rollback to revision 1")
    assert_no_failures(traffic)
    assert rolled.versions["v1"] > 0


def _canary_rolled_back(kubectl, namespace, revision: int, reason: str | None = None) -> dict:
    """The status once canary `revision` has been rolled back (Degraded, stable serving)."""
    def check():
        st = status(kubectl, namespace, "m")
        degraded = condition(st, "Degraded")
        return (st.get("abortedRevision") == revision and degraded[0] == "True"
                and (reason is None or degraded[1] == reason) and st)
    return eventually(check, timeout=180, what=f"rollback of revision {revision} ({reason})")


ERROR_RATE = (
    'sum(rate(modelserve_requests_total{namespace="{{namespace}}",model="{{deployment}}",'
    'version="{{version}}",status=~"5.."}[10s])) / sum(rate(modelserve_requests_total{'
    'namespace="{{namespace}}",model="{{deployment}}",version="{{version}}"}[10s]))')


def analysed_rollout(prometheus_url: str) -> dict:
    return {"strategy": "Canary", "scaleDownDelaySeconds": 5, "progressDeadlineSeconds": 90,
            "canary": {"steps": [{"setWeight": 10}, {"analysis": {"metrics": ["error-rate"]}},
                                 {"setWeight": 100}]},
            "analysis": {"metrics": [{"name": "error-rate", "max": 0.05, "interval": "2s",
                                      "count": 5, "failureLimit": 0,
                                      "prometheus": {"address": prometheus_url,
                                                     "query": ERROR_RATE}}]}}


def test_bad_versions_are_rolled_back_automatically(kubectl, namespace, operator, models,
                                                    runtime_prometheus, traffic_for):
    rollout = analysed_rollout(runtime_prometheus.url)
    serve_v1(kubectl, namespace, models, rollout=rollout)
    traffic = traffic_for("m")
    for name, model, sha in (("broken", "broken", None),
                             ("wrong-digest", "good-v2", "0" * 64),
                             ("errors", "errors-under-load", None)):
        kubectl.apply(real_version(models, name, model, sha256=sha), namespace)

    with traffic.phase("model that fails to load"):
        kubectl.apply(real_deployment("m", "broken", rollout=rollout), namespace)
        st = _canary_rolled_back(kubectl, namespace, 2)
        assert st["revision"] == 1, st
        eventually(lambda: ready_pods(kubectl, namespace, "m-r2") == 0
                   and replicas(kubectl, namespace, "m-r2") in (0, None), what="canary at 0")
    with traffic.phase("digest mismatch at fetch"):
        kubectl.apply(real_deployment("m", "wrong-digest", rollout=rollout), namespace)
        st = _canary_rolled_back(kubectl, namespace, 3)
        assert st["revision"] == 1, st
    with traffic.phase("model answering errors (analysis)") as errors:
        kubectl.apply(real_deployment("m", "errors", rollout=rollout), namespace)
        st = _canary_rolled_back(kubectl, namespace, 4, "AnalysisFailed")
        assert st["revision"] == 1, st
        message = next(c["message"] for c in st["conditions"] if c["type"] == "Degraded")
        assert "error-rate" in message
        eventually(lambda: ready_pods(kubectl, namespace, "m-r4") == 0, what="canary drained")
        time.sleep(2)
    kubectl.apply(real_version(models, "v2", "good-v2"), namespace)
    with traffic.phase("good version passes analysis, promoted") as good:
        kubectl.apply(real_deployment("m", "v2", rollout=rollout), namespace)
        st = wait_status(kubectl, namespace, "m", revision=5, phase="Ready", timeout=180)
        assert all(m["passed"] for m in st.get("analysis", {}).get("measurements", [])), st
    report(traffic, "automatic rollback of bad versions (real Prometheus, real runtime metrics)")
    # A canary that answers errors exposes its share of traffic until analysis stops it.
    assert_no_failures(traffic, allowed=("model answering errors (analysis)",))
    assert set(errors.failures) <= {"HTTP 500"}, errors.failures
    assert good.versions["v2"] > 0


def test_scale_down_and_replacement_drain_cleanly(kubectl, namespace, operator, models,
                                                  traffic_for):
    rolling = {"strategy": "Rolling", "scaleDownDelaySeconds": 0}
    serve_v1(kubectl, namespace, models, rollout=rolling)
    traffic = traffic_for("m")
    with traffic.phase("scale 4 -> 1 (SIGTERM drain)"):
        kubectl.run("scale", "md", "m", "--replicas=1", "-n", namespace)
        eventually(lambda: len(kubectl.get("pods", namespace=namespace)["items"]) == 1,
                   timeout=90, what="3 pods gone")
    with traffic.phase("scale 1 -> 3"):
        kubectl.run("scale", "md", "m", "--replicas=3", "-n", namespace)
        wait_status(kubectl, namespace, "m", ready="3/3", phase="Ready", timeout=120)
    kubectl.apply(real_version(models, "v2", "good-v2"), namespace)
    with traffic.phase("new version replaces pods (Rolling)") as replaced:
        kubectl.apply(real_deployment("m", "v2", replicas=3, rollout=rolling), namespace)
        wait_status(kubectl, namespace, "m", revision=2, phase="Ready", timeout=120)
        eventually(lambda: replicas(kubectl, namespace, "m-r1") in (0, None)
                   and not [p for p in kubectl.get("pods", namespace=namespace)["items"]
                            if p["metadata"]["labels"].get("modelserve.io/revision") == "1"],
                   timeout=120, what="revision 1 drained")
    recreate = {"strategy": "Recreate"}
    kubectl.apply(real_version(models, "v3", "good-v3"), namespace)
    with traffic.phase("Recreate (an outage the user asked for)") as outage:
        kubectl.apply(real_deployment("m", "v3", replicas=3, rollout=recreate), namespace)
        wait_status(kubectl, namespace, "m", revision=3, phase="Ready", timeout=120)
        time.sleep(2)
    report(traffic, "scale-down, rolling replacement and Recreate")
    assert_no_failures(traffic, allowed=(outage.name,))
    assert replaced.versions["v2"] > 0
    print(f"Recreate outage: {outage.failed} failed requests, longest gap "
          f"{outage.worst_gap_s:.1f}s")


def test_operator_pod_killed_mid_rollout(kubectl, namespace, operator, models, traffic_for):
    traffic, _ = serve_v1_then_canary(kubectl, namespace, models, traffic_for)
    with traffic.phase("operator leader SIGKILLed, promote"):
        operator.kill()
        modelserve(kubectl, "promote", "m", "-n", namespace)
        wait_status(kubectl, namespace, "m", canaryWeight=50, phase="Paused", timeout=120)
    with traffic.phase("promote to 100% under the new leader"):
        operator.wait_leader()
        modelserve(kubectl, "promote", "m", "-n", namespace)
        wait_status(kubectl, namespace, "m", revision=2, phase="Ready", timeout=120)
    report(traffic, "operator pod killed mid-rollout")
    assert_no_failures(traffic)


def _kill_runtime_processes(kubectl: Kubectl, namespace: str, pool: str) -> int:
    """SIGKILL the runtime process of every pod of `pool` on the node (a crash, not a
    deletion: the kubelet restarts the containers with its crash back-off)."""
    killed = 0
    for pod in kubectl.get("pods", namespace=namespace)["items"]:
        if pod["metadata"]["labels"].get("modelserve.io/pool") != pool:
            continue
        for container in pod["status"].get("containerStatuses", []):
            if container["name"] == "runtime" and container.get("containerID"):
                kill_container(container["containerID"])
                killed += 1
    return killed


def test_fallback_serves_while_every_primary_process_is_dead(kubectl, namespace, operator,
                                                             models, traffic_for):
    kubectl.apply(real_version(models, "small", "good-v3"), namespace)
    serve_v1(kubectl, namespace, models, replicas=2,
             fallback={"modelVersion": "small", "replicas": 1})
    eventually(lambda: ready_pods(kubectl, namespace, "m-fallback") == 1, timeout=120,
               what="fallback warm")
    traffic = traffic_for("m")
    with traffic.phase("every primary process SIGKILLed") as down:
        assert _kill_runtime_processes(kubectl, namespace, "primary") == 2
        eventually(lambda: status(kubectl, namespace, "m").get("fallbackActive") is True,
                   timeout=60, what="fallback active")
        time.sleep(3)
    with traffic.phase("primary back (kubelet restarted it)"):
        eventually(lambda: not status(kubectl, namespace, "m").get("fallbackActive"),
                   timeout=120, what="fallback released")
        eventually(lambda: kubectl.get("svc", "m", namespace)["spec"]["selector"].get(
            "modelserve.io/pool") == "primary", what="svc -> primary")
        time.sleep(3)
    report(traffic, "all primary processes killed -> fallback serves -> primary back")
    assert down.versions["small"] > 0, down.split()
    # Between the crash and the switch the Service has no ready endpoint: report the gap.
    print(f"fallback switch: {down.failed} failed requests, longest gap "
          f"{down.worst_gap_s:.1f}s")
    assert_no_failures(traffic, allowed=(down.name,))
