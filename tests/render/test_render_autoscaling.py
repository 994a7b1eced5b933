"""Autoscaler rendering: golden files per case, and the query's label-variant handling.

Run with UPDATE_GOLDEN=1 to rewrite golden/autoscaling/*.yaml, then read the diff.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml

from modelserve_operator.api import ModelDeploymentSpec
from modelserve_operator.render import Meta, render_hpa, render_scaled_object
from modelserve_operator.render.autoscaling import dcgm_query, pod_name_regex
from tests.golden import assert_golden

GOLDEN = pathlib.Path(__file__).parent / "golden" / "autoscaling"
MD = Meta(name="resnet50", namespace="ml", uid="6f1c3a52-1d1e-4a43-9b0e-3d1f0a9e2c11")
PROMETHEUS = "http://prometheus.monitoring.svc:9090"
BEHAVIOR = {"scaleDown": {"stabilizationWindowSeconds": 60,
                          "policies": [{"type": "Percent", "value": 50, "periodSeconds": 30}]}}

CASES = {
    "hpa-dcgm-defaults": ("hpa", {"maxReplicas": 8}),
    "hpa-runtime-queue-behavior": ("hpa", {
        "minReplicas": 2, "maxReplicas": 10, "targetGPUUtilization": 60,
        "metricSource": "runtime", "targetQueueDepth": 4, "behavior": BEHAVIOR}),
    "keda-dcgm-scale-to-zero": ("keda", {
        "provider": "keda", "minReplicas": 0, "maxReplicas": 4, "behavior": BEHAVIOR}),
    "keda-runtime-queue": ("keda", {
        "provider": "keda", "maxReplicas": 6, "metricSource": "runtime",
        "targetQueueDepth": 8}),
}


def spec(autoscaling: dict) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {"modelVersion": "resnet50-v3", "autoscaling": autoscaling})


def render(case: str) -> str:
    kind, autoscaling = CASES[case]
    if kind == "hpa":
        obj = render_hpa(MD, spec(autoscaling), "resnet50-r3")
    else:
        obj = render_scaled_object(MD, spec(autoscaling), "resnet50-r3", PROMETHEUS)
    return yaml.safe_dump(obj, sort_keys=False, width=100)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    assert_golden(GOLDEN / f"{case}.yaml", render(case))


def test_no_stale_goldens() -> None:
    assert {p.stem for p in GOLDEN.glob("*.yaml")} <= set(CASES)


def test_hpa_targets_the_given_deployment_and_is_owned() -> None:
    hpa = render_hpa(MD, spec({"maxReplicas": 3}), "resnet50-r9")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "resnet50-r9"}
    assert hpa["metadata"]["name"] == "resnet50"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == MD.uid
    assert hpa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelserve"
    assert "behavior" not in hpa["spec"]


def test_long_name_gives_valid_hpa_name() -> None:
    long = Meta(name="a." + "x" * 100, namespace="ml", uid="u")
    name = render_hpa(long, spec({"maxReplicas": 3}), "d")["metadata"]["name"]
    assert len(name) <= 63 and "." not in name


@pytest.mark.parametrize("render_fn", [render_hpa, render_scaled_object])
def test_without_autoscaling_is_an_error(render_fn) -> None:
    args = (MD, ModelDeploymentSpec.model_validate({"modelVersion": "v"}), "d")
    with pytest.raises(ValueError, match=r"spec\.autoscaling"):
        render_fn(*args) if render_fn is render_hpa else render_fn(*args, PROMETHEUS)


def test_dcgm_query_selects_every_label_variant_of_the_deployment_only() -> None:
    query = dcgm_query("ml", "resnet50-r1")
    for ns_label, pod_label in (("namespace", "pod"), ("pod_namespace", "pod_name"),
                                ("exported_namespace", "exported_pod")):
        assert f'{ns_label}="ml",{pod_label}=~"{pod_name_regex("resnet50-r1")}"' in query
    # Anchored by PromQL: resnet50-r12's pods have one more character before the hash.
    assert pod_name_regex("resnet50-r1") == "resnet50-r1-[a-z0-9]+-[a-z0-9]+"
