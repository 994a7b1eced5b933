"""Golden files: the whole rendered output for each named case in render_cases.py.

Run with UPDATE_GOLDEN=1 to rewrite them, then read the diff before committing it.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml
from render_cases import CASES, Case

from modelserve_operator.render import (
    Meta,
    RenderSettings,
    render_deployment,
    render_revision_service,
    render_service,
)
from tests.golden import assert_golden

GOLDEN = pathlib.Path(__file__).parent / "golden"
MD = Meta(name="resnet50", namespace="ml", uid="6f1c3a52-1d1e-4a43-9b0e-3d1f0a9e2c11")
SETTINGS = RenderSettings()


def render_all(case: Case) -> str:
    spec, version = case.specs()
    settings = case.settings or SETTINGS
    objects = [
        render_deployment(MD, spec, "resnet50-v3", version, case.revision, case.role,
                          case.replicas, settings),
        render_revision_service(MD, case.revision, case.role, settings),
        render_service(MD, settings),
    ]
    return yaml.safe_dump_all(objects, sort_keys=False, width=100)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    assert_golden(GOLDEN / f"{name}.yaml", render_all(CASES[name]))


def test_render_is_deterministic() -> None:
    # Same input, same bytes: the controllers' "skip writes that change nothing" needs it.
    for case in CASES.values():
        assert render_all(case) == render_all(case)


def test_no_stale_goldens() -> None:
    assert {p.stem for p in GOLDEN.glob("*.yaml")} <= set(CASES)


def _pod(case: str) -> dict:
    spec, version = CASES[case].specs()
    c = CASES[case]
    return render_deployment(MD, spec, "resnet50-v3", version, c.revision, c.role,
                             c.replicas, SETTINGS)["spec"]["template"]["spec"]


def test_cpu_pod_has_no_gpu_anything() -> None:
    pod = _pod("cpu-only")
    assert "tolerations" not in pod and "affinity" not in pod and "runtimeClassName" not in pod
    assert not any(k.startswith("nvidia.com/")
                   for k in pod["containers"][0]["resources"].get("limits", {}))


def test_pvc_is_mounted_read_only_without_fetch() -> None:
    pod = _pod("pvc")
    assert "initContainers" not in pod
    assert pod["volumes"][0] == {"name": "model", "persistentVolumeClaim": {
        "claimName": "model-store", "readOnly": True}}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MODELSERVE_MODEL_PATH"] == "/models/resnet50/v3/model.plan"


def test_user_gpu_toleration_is_not_duplicated() -> None:
    tolerations = _pod("user-overrides")["tolerations"]
    assert [t["key"] for t in tolerations].count("nvidia.com/gpu") == 1


def test_role_is_not_in_selector_or_pod_template() -> None:
    # Promotion re-renders the canary as stable: nothing immutable or pod-rolling may move.
    spec, version = CASES["hpa-owned-replicas"].specs()
    canary, stable = (render_deployment(MD, spec, "resnet50-v3", version, 4, role, None,
                                        SETTINGS) for role in ("canary", "stable"))
    assert canary["spec"]["selector"] == stable["spec"]["selector"]
    assert canary["spec"]["template"] == stable["spec"]["template"]
    assert canary["metadata"]["labels"]["modelserve.io/role"] == "canary"
    assert "replicas" not in canary["spec"]


def test_user_facing_service_selects_primary_pods_of_every_revision() -> None:
    spec, version = CASES["recreate"].specs()
    service_selector = render_service(MD, SETTINGS)["spec"]["selector"]
    for revision, role in ((3, "stable"), (4, "canary")):
        labels = render_deployment(MD, spec, "v", version, revision, role, 1, SETTINGS)[
            "spec"]["template"]["metadata"]["labels"]
        assert service_selector.items() <= labels.items()
    fallback = render_deployment(MD, spec, "v", version, 1, "fallback", 1, SETTINGS)
    assert not service_selector.items() <= fallback["spec"]["template"]["metadata"][
        "labels"].items()
