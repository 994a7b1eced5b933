"""The autoscaler controller: status from the HPA's report, and when it writes what."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelserve_operator.api import ModelDeploymentSpec
from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.cluster.store import Store
from modelserve_operator.controllers.reconcilers.autoscaling import (
    HANDOVER_MANAGER,
    autoscaler_status,
    ensure_autoscaler,
    parse_quantity,
)
from modelserve_operator.render import Meta, RenderSettings

NS = "ml"
META = Meta(name="llm", namespace=NS, uid="u-1")
SCALING = {"minReplicas": 1, "maxReplicas": 8, "targetGPUUtilization": 50}


def md(autoscaling: dict[str, Any] | None = SCALING, status: dict | None = None) -> dict:
    spec: dict[str, Any] = {"modelVersion": "v1"}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return {"metadata": {"name": "llm", "namespace": NS, "uid": "u-1"}, "spec": spec,
            "status": status or {}}


def hpa(target: str = "llm-r1", conditions: list[dict] | None = None, gpu: str | None = "62500m",
        name: str = "llm", **status: Any) -> dict:
    metrics = []
    if gpu is not None:
        metrics.append({"type": "Pods", "pods": {
            "metric": {"name": "modelserve_dcgm_gpu_utilization"},
            "current": {"averageValue": gpu}}})
    return {"metadata": {"name": name, "namespace": NS,
                         "labels": {"modelserve.io/deployment": "llm"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": target}},
            "status": {"currentMetrics": metrics, "conditions": conditions or [], **status}}


def store_with(*objects: tuple[str, dict]) -> Store:
    store = Store()
    for kind, body in objects:
        store.upsert(kind, body)
    return store


ACTIVE = {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
          "message": "ok"}
MISSING = {"type": "ScalingActive", "status": "False", "reason": "FailedGetPodsMetric",
           "message": "unable to get metric modelserve_dcgm_gpu_utilization: not found"}
LIMITED = {"type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas",
           "message": "the desired replica count is more than the maximum replica count"}
CANNOT = {"type": "AbleToScale", "status": "False", "reason": "FailedGetScale",
          "message": "deployments/scale.apps \"llm-r1\" not found"}


@pytest.mark.parametrize(("name", "conditions", "reason"), [
    ("healthy", [ACTIVE], None),
    ("metric-missing", [MISSING], "FailedGetPodsMetric"),
    ("at-max-is-not-a-problem", [ACTIVE, LIMITED], None),
    ("cannot-scale-wins", [MISSING, CANNOT], "FailedGetScale"),
    ("scaled-to-zero-on-purpose",
     [{"type": "ScalingActive", "status": "False", "reason": "ScalingDisabled"}], None),
])
def test_problem_from_hpa_conditions(name: str, conditions: list, reason: str | None) -> None:
    store = store_with(("ModelDeployment", md()),
                       ("HorizontalPodAutoscaler", hpa(conditions=conditions)))
    problem, fields = autoscaler_status(store, NS, "llm")
    assert (problem.reason if problem else None) == reason, name
    assert [c["reason"] for c in fields["autoscaling"]["conditions"]] == [
        c["reason"] for c in conditions]


def test_missing_metric_message_says_what_to_check() -> None:
    store = store_with(("ModelDeployment", md()),
                       ("HorizontalPodAutoscaler", hpa(conditions=[MISSING], gpu=None)))
    problem, _ = autoscaler_status(store, NS, "llm")
    assert problem is not None
    assert "modelserve_dcgm_gpu_utilization" in problem.message
    assert "docs/autoscaling.md" in problem.message


def test_status_fields_as_the_hpa_sees_them() -> None:
    store = store_with(("ModelDeployment", md()), ("HorizontalPodAutoscaler", hpa(
        conditions=[ACTIVE], currentReplicas=4, desiredReplicas=5,
        lastScaleTime="2026-01-01T00:00:00Z")))
    assert autoscaler_status(store, NS, "llm") == (None, {"autoscaling": {
        "provider": "hpa", "targetGPUUtilization": 50, "scaleTarget": "llm-r1",
        "currentReplicas": 4, "desiredReplicas": 5, "currentGPUUtilization": 62,
        "lastScaleTime": "2026-01-01T00:00:00Z",
        "conditions": [{"type": "ScalingActive", "status": "True",
                        "reason": "ValidMetricFound", "message": "ok"}]}})


def test_vanished_values_are_removed_and_steady_state_compares_equal() -> None:
    before = {"provider": "hpa", "targetGPUUtilization": 50, "currentGPUUtilization": 40}
    store = store_with(("ModelDeployment", md(status={"autoscaling": before})),
                       ("HorizontalPodAutoscaler", hpa(gpu=None)))
    _, fields = autoscaler_status(store, NS, "llm")
    assert fields["autoscaling"]["currentGPUUtilization"] is None  # merge patch deletes it
    stored = {k: v for k, v in fields["autoscaling"].items() if v is not None}
    store.upsert("ModelDeployment", md(status={"autoscaling": stored}))
    assert autoscaler_status(store, NS, "llm")[1] == {"autoscaling": stored}


def test_off_removes_the_field_and_keda_reads_kedas_hpa() -> None:
    assert autoscaler_status(store_with(("ModelDeployment", md(None))), NS, "llm") == (
        None, {"autoscaling": None})
    keda = {**SCALING, "provider": "keda"}
    store = store_with(("ModelDeployment", md(keda)),
                       ("HorizontalPodAutoscaler", hpa(name="keda-hpa-llm", gpu=None,
                                                       desiredReplicas=3)))
    assert autoscaler_status(store, NS, "llm")[1]["autoscaling"]["desiredReplicas"] == 3


@pytest.mark.parametrize(("text", "value"), [
    ("62500m", 62.5), ("90", 90.0), ("1500u", 0.0015), ("2k", 2000.0), ("", None),
    ("junk", None)])
def test_parse_quantity(text: str, value: float | None) -> None:
    assert parse_quantity(text) == value


class RecordingKube:
    """Records writes; answers reads from nothing (unit tests never reach a cluster)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str, str, Any]] = []

    async def get(self, *_: Any) -> None:
        return None

    async def apply(self, obj: dict, field_manager: str = "modelserve-operator") -> dict:
        self.writes.append(("apply", obj["kind"], field_manager, obj))
        return obj

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.writes.append(("delete", kind, name, None))


def context(store: Store) -> tuple[Context, RecordingKube]:
    kube = RecordingKube()
    return Context(store, kube, queue=None, settings=RenderSettings(),  # type: ignore[arg-type]
                   prometheus_url="http://prometheus:9090"), kube


def deployment(name: str, replicas: int) -> dict:
    return {"metadata": {"name": name, "namespace": NS,
                         "labels": {"modelserve.io/deployment": "llm"}},
            "spec": {"replicas": replicas}, "status": {}}


def spec(autoscaling: dict | None = SCALING) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(md(autoscaling)["spec"])


def test_waits_for_the_deployment_then_hands_over_once() -> None:
    store = store_with(("ModelDeployment", md()))
    ctx, kube = context(store)
    asyncio.run(ensure_autoscaler(ctx, META, spec(), "llm-r1"))
    assert kube.writes == []  # no target yet: an HPA would only report FailedGetScale

    store.upsert("Deployment", deployment("llm-r1", 3))
    asyncio.run(ensure_autoscaler(ctx, META, spec(), "llm-r1"))
    (_, kind1, manager1, obj1), (_, kind2, manager2, _) = kube.writes
    assert (kind1, manager1, obj1["spec"]) == ("Deployment", HANDOVER_MANAGER, {"replicas": 3})
    assert (kind2, manager2) == ("HorizontalPodAutoscaler", "modelserve-operator")

    kube.writes.clear()  # steady state: nothing to write
    asyncio.run(ensure_autoscaler(ctx, META, spec(), "llm-r1"))
    assert kube.writes == []


def test_promotion_repoints_the_hpa_after_handing_the_new_stable_over() -> None:
    store = store_with(("ModelDeployment", md()), ("Deployment", deployment("llm-r2", 4)))
    ctx, kube = context(store)
    store.upsert("HorizontalPodAutoscaler", hpa(target="llm-r1"))
    asyncio.run(ensure_autoscaler(ctx, META, spec(), "llm-r2"))
    assert [(w[1], w[2]) for w in kube.writes] == [
        ("Deployment", HANDOVER_MANAGER), ("HorizontalPodAutoscaler", "modelserve-operator")]
    assert kube.writes[0][3]["metadata"]["name"] == "llm-r2"
    assert kube.writes[1][3]["spec"]["scaleTargetRef"]["name"] == "llm-r2"


def test_turning_autoscaling_off_deletes_ours_only_when_there() -> None:
    store = store_with(("ModelDeployment", md(None)))
    ctx, kube = context(store)
    asyncio.run(ensure_autoscaler(ctx, META, spec(None), "llm-r1"))
    assert kube.writes == []
    store.upsert("HorizontalPodAutoscaler", hpa())
    asyncio.run(ensure_autoscaler(ctx, META, spec(None), "llm-r1"))
    assert kube.writes == [("delete", "HorizontalPodAutoscaler", "llm", None)]


def test_switching_to_keda_replaces_the_hpa_with_a_scaled_object() -> None:
    keda = {**SCALING, "provider": "keda"}
    store = store_with(("ModelDeployment", md(keda, {"autoscaling": {"provider": "hpa"}})),
                       ("Deployment", deployment("llm-r1", 2)),
                       ("HorizontalPodAutoscaler", hpa()))
    ctx, kube = context(store)
    asyncio.run(ensure_autoscaler(ctx, META, spec(keda), "llm-r1"))
    assert [(w[0], w[1]) for w in kube.writes] == [
        ("delete", "HorizontalPodAutoscaler"), ("apply", "Deployment"),
        ("apply", "ScaledObject")]
