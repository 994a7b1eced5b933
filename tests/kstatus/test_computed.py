"""Every phase the status function produces, as kstatus (Flux, kpt) reads it.

The objects here are built by the operator's own status function; the captured objects
of real e2e runs are judged in test_captured.py.
"""

from __future__ import annotations

import pytest

from modelserve_operator.controllers.decisions.conditions import Problem
from modelserve_operator.controllers.decisions.status import Observed, compute
from modelserve_operator.controllers.decisions.version_status import compute_status, problems_of


def deployment(ready: int = 2, replicas: int = 2) -> dict:
    return {"metadata": {"name": "m-r1", "generation": 1},
            "status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas,
                       "observedGeneration": 1}}


def md(**observed) -> dict:
    base = dict(generation=4, previous={}, now="2026-11-30T00:00:00Z", desired_replicas=2,
                revision=1, model_version="v1", deployment=deployment())
    base.update(observed)
    return {"apiVersion": "modelserve.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "m", "namespace": "ns", "generation": 4},
            "spec": {"modelVersion": "v1"}, "status": compute(Observed(**base))}


PAUSED = (True, "Paused", "step 2/2: paused at 20% until `modelserve promote`")
# case: (observations, kstatus status)
CASES = {
    "ready": ({}, "Current"),
    "rolling-pods-starting": ({"deployment": deployment(ready=1)}, "InProgress"),
    "rolling-nothing-yet": ({"deployment": None}, "InProgress"),
    "canary-paused": ({"progressing": PAUSED}, "InProgress"),
    "canary-pausing": ({"progressing": (True, "Pausing", "step 2/4: 5m pause")}, "InProgress"),
    "canary-analysing": ({"progressing": (True, "Analysing", "step 3: measuring")},
                         "InProgress"),
    "canary-promoting": ({"progressing": (True, "Promoting", "scaling revision 2")},
                         "InProgress"),
    "rolled-back": ({"rollout_problem": Problem("AnalysisFailed", "errors 0.2 > 0.01")},
                    "Failed"),
    "gpus-unavailable": ({"deployment": deployment(ready=0),
                          "pod_problem": Problem("GPUsUnavailable", "no GPUs")}, "Failed"),
    "deadline-exceeded": ({"deployment": deployment(ready=0), "deadline_exceeded": True},
                          "Failed"),
    "serving-version-deleted": ({"input_problem": Problem("ModelVersionNotFound", "gone")},
                                "Failed"),
    "invalid-spec": ({"input_problem": Problem("InvalidSpec", "spec.replicas: < 0")},
                     "Failed"),
    "scaled-to-zero": ({"desired_replicas": 0, "deployment": deployment(0, 0)}, "Current"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_phase_reads_right(judge, case):
    observed, expected = CASES[case]
    status, message = judge(md(**observed))
    assert status == expected, message


def test_a_generation_not_yet_observed_is_in_progress(judge):
    obj = md()
    obj["metadata"]["generation"] += 1
    assert judge(obj)[0] == "InProgress"


def test_model_version(judge):
    valid = {"model": {"uri": "https://m.example/m.onnx", "format": "onnx"},
             "runtime": {"backend": "onnxruntime"}}
    invalid = {**valid, "runtime": {"backend": "torch"}}  # torch cannot load onnx
    for spec, expected in ((valid, "Current"), (invalid, "Failed")):
        obj = {"apiVersion": "modelserve.io/v1alpha1", "kind": "ModelVersion",
               "metadata": {"name": "v", "generation": 1}, "spec": spec,
               "status": compute_status(problems_of(spec), {}, 1, "2026-11-30T00:00:00Z")}
        assert judge(obj)[0] == expected, obj["status"]
