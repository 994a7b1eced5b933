"""Argo CD health checks (the chart's Lua), run in a real Lua against statuses captured
from e2e runs (tests/argocd/fixtures, refreshed by `MODELSERVE_UPDATE_FIXTURES=1
hack/test e2e -k charts_identity`)."""

from __future__ import annotations

import copy
import json
import pathlib

import pytest

from e2e.argocd_health import health

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# fixture: (Argo CD status, text the message must contain)
CAPTURED = {
    "md-ready": ("Healthy", "Serving: 2/2 pods of revision 1 ready"),
    "md-canary-pausing": ("Progressing", "Pausing: step 2/4"),
    "md-canary-paused": ("Suspended", "modelserve promote"),
    "md-degraded-gpus-unavailable": ("Degraded", "GPUsUnavailable: pod stuck-r1-"),
    "mv-valid": ("Healthy", "Valid"),
    "mv-invalid": ("Degraded", "spec.runtime.backend 'torch' cannot load"),
}


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_statuses(name):
    status, message = CAPTURED[name]
    got_status, got_message = health(fixture(name))
    assert got_status == status
    assert message in got_message


@pytest.mark.parametrize("name", ["md-ready", "md-canary-paused", "mv-valid"])
def test_a_generation_the_operator_has_not_seen_is_progressing(name):
    obj = fixture(name)
    obj["metadata"]["generation"] += 1  # the user just changed the spec
    status, message = health(obj)
    assert status == "Progressing"
    assert "generation" in message


def test_a_condition_from_an_older_generation_is_ignored():
    obj = fixture("md-degraded-gpus-unavailable")
    for c in obj["status"]["conditions"]:
        if c["type"] == "Degraded":
            c["observedGeneration"] -= 1
    assert health(obj)[0] == "Progressing"  # still rolling out, no current Degraded


@pytest.mark.parametrize("kind", ["ModelDeployment", "ModelVersion"])
def test_no_status_yet_is_progressing(kind):
    obj = {"apiVersion": "modelserve.io/v1alpha1", "kind": kind,
           "metadata": {"name": "m", "generation": 1}, "spec": {}}
    status, message = health(obj)
    assert status == "Progressing"
    assert "operator" in message


# phase alone (no conditions): what an operator too old to write conditions reports
PHASES = {"Ready": "Healthy", "Degraded": "Degraded", "Paused": "Suspended",
          "Progressing": "Progressing"}


@pytest.mark.parametrize("phase", PHASES)
def test_phase_fallback(phase):
    obj = copy.deepcopy(fixture("md-ready"))
    obj["status"].pop("conditions")
    obj["status"]["phase"] = phase
    assert health(obj)[0] == PHASES[phase]
