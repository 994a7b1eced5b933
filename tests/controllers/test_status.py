"""ModelDeployment status as a pure function of observations."""

import pytest

from modelserve_operator.controllers.decisions.conditions import Problem
from modelserve_operator.controllers.decisions.status import Observed, changed, compute, rolled_out


def deployment(replicas=2, ready=2, updated=2, generation=1, observed=1):
    return {"metadata": {"name": "md-r1", "generation": generation},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": updated,
                       "observedGeneration": observed}}


def observe(**kwargs):
    base = dict(generation=3, previous={}, now="t", desired_replicas=2, revision=1,
                model_version="mv1", deployment=deployment())
    base.update(kwargs)
    return compute(Observed(**base))


def conditions(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


CASES = {
    "all-ready": (dict(), "Ready", {"Ready": ("True", "Serving"),
                                    "Progressing": ("False", "RolloutComplete"),
                                    "Degraded": ("False", "AsExpected"),
                                    "Reconciling": ("False", "Reconciled"),
                                    "Stalled": ("False", "AsExpected")}),
    "pods-starting": (dict(deployment=deployment(ready=1)), "Progressing",
                      {"Ready": ("False", "PartiallyReady"),
                       "Progressing": ("True", "RollingOut"),
                       "Reconciling": ("True", "RollingOut")}),
    "nothing-yet": (dict(deployment=None), "Progressing",
                    {"Ready": ("False", "NoReadyPods")}),
    "no-gpus": (dict(deployment=deployment(ready=0),
                     pod_problem=Problem("GPUsUnavailable", "no GPUs")), "Degraded",
                {"Degraded": ("True", "GPUsUnavailable"), "Ready": ("False", "GPUsUnavailable")}),
    "missing-version-old-serving": (
        dict(deployment=None, older_serving=2,
             input_problem=Problem("ModelVersionNotFound", "missing")), "Degraded",
        {"Degraded": ("True", "ModelVersionNotFound"),
         "Progressing": ("False", "ModelVersionNotFound")}),
    "serving-version-deleted": (
        dict(input_problem=Problem("ModelVersionNotFound", "gone")), "Degraded",
        {"Ready": ("True", "Serving"), "Degraded": ("True", "ModelVersionNotFound"),
         "Stalled": ("True", "ModelVersionNotFound"), "Reconciling": ("False", "Stalled")}),
    "canary-paused": (dict(progressing=(True, "Paused", "until promote")), "Paused",
                      {"Reconciling": ("True", "Paused"), "Stalled": ("False", "AsExpected")}),
    "deadline": (dict(deployment=deployment(ready=0), deadline_exceeded=True), "Degraded",
                 {"Degraded": ("True", "ProgressDeadlineExceeded")}),
    "scaled-to-zero": (dict(desired_replicas=0, deployment=deployment(0, 0, 0)), "Ready",
                       {"Ready": ("True", "ScaledToZero")}),
    "stale-deployment-generation": (dict(deployment=deployment(observed=0)), "Progressing",
                                    {"Progressing": ("True", "RollingOut")}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_status(case):
    kwargs, phase, expected = CASES[case]
    status = observe(**kwargs)
    assert status["phase"] == phase
    got = conditions(status)
    for type_, value in expected.items():
        assert got[type_] == value, (type_, got[type_])
    assert status["observedGeneration"] == 3
    assert status["ready"] == f"{status['readyReplicas']}/{status['desiredReplicas']}"


def test_recomputing_from_stored_status_changes_nothing():
    first = observe()
    assert not changed(first, observe(previous=first))


def test_rolled_out_needs_no_extra_old_pods():
    assert not rolled_out(deployment(replicas=3, ready=2), 2)
    assert rolled_out(deployment(), 2)


def test_status_is_written_through_the_model_and_none_still_removes_a_field():
    status = observe(extra={"canaryRevision": None, "trafficProvider": "service"})
    assert "canaryRevision" in status and status["canaryRevision"] is None  # merge patch: remove
    assert status["trafficProvider"] == "service"


def test_a_misspelt_status_field_fails_in_compute_not_silently_in_the_api_server():
    with pytest.raises(ValueError, match="canaryRevison"):
        observe(extra={"canaryRevison": 2})
