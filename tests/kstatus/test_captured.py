"""kstatus (Flux, kpt) and the chart's Argo CD health check on objects captured from e2e
runs (tests/kstatus/fixtures, refreshed by `MODELSERVE_UPDATE_FIXTURES=1 hack/test e2e
-k kstatus`): both tools must read every phase the same way."""

from __future__ import annotations

import json
import pathlib

import pytest

from e2e.argocd_health import health

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"

# fixture: (kstatus, Argo CD)
CAPTURED = {
    "md-ready": ("Current", "Healthy"),
    "md-canary-paused": ("InProgress", "Suspended"),
    "md-aborted": ("Failed", "Degraded"),
    "md-serving-version-deleted": ("Failed", "Degraded"),
    "mv-valid": ("Current", "Healthy"),
    "mv-invalid": ("Failed", "Degraded"),
}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_captured_object_reads_the_same_in_both_tools(judge, name):
    expected_kstatus, expected_argo = CAPTURED[name]
    obj = fixture(name)
    assert judge(obj)[0] == expected_kstatus
    assert health(obj)[0] == expected_argo


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_a_generation_not_yet_observed_reads_in_progress(judge, name):
    obj = fixture(name)
    obj["metadata"]["generation"] += 1  # the user just changed the spec
    assert judge(obj)[0] == "InProgress"


def test_serving_version_deleted_still_says_what_serves():
    conditions = {c["type"]: c for c in fixture("md-serving-version-deleted")["status"][
        "conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Degraded"]["reason"] == "ModelVersionNotFound"
