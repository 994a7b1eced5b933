"""Pod trouble becomes a reason a user can act on; transition times move only on flips."""

import pytest

from modelserve_operator.controllers.decisions.conditions import pod_problem, set_condition


def pod(name="p", scheduled=None, waiting=None):
    conditions = []
    if scheduled:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": scheduled})
    statuses = [{"state": {"waiting": {"reason": waiting, "message": "boom"}}}] if waiting else []
    return {"metadata": {"name": name},
            "status": {"conditions": conditions, "containerStatuses": statuses}}


def fetch_failed(message, last=False):
    terminated = {"terminated": {"exitCode": 1, "reason": "Error", "message": message}}
    state = {"waiting": {"reason": "CrashLoopBackOff"}} if last else terminated
    status = {"name": "fetch-model", "state": state, "lastState": terminated if last else {}}
    return {"metadata": {"name": "p"}, "status": {"initContainerStatuses": [status]}}


def fetch_running():
    status = {"name": "fetch-model", "state": {"running": {}}, "lastState": {}}
    return {"metadata": {"name": "p"}, "status": {"initContainerStatuses": [status]}}


CASES = {
    "healthy": ([pod()], "nvidia.com/gpu", None),
    "no-gpus": ([pod(scheduled="0/5 nodes are available: 3 Insufficient nvidia.com/gpu.")],
                "nvidia.com/gpu", "GPUsUnavailable"),
    "no-mig-slices": ([pod(scheduled="Insufficient nvidia.com/mig-1g.10gb")],
                      "nvidia.com/mig-1g.10gb", "GPUsUnavailable"),
    "other-unschedulable": ([pod(scheduled="node(s) didn't match node selector")],
                            "nvidia.com/gpu", "Unschedulable"),
    "cpu-pod-unschedulable": ([pod(scheduled="Insufficient memory")], None, "Unschedulable"),
    "image-pull": ([pod(waiting="ImagePullBackOff")], None, "ImagePullFailed"),
    "crash-loop": ([pod(waiting="CrashLoopBackOff")], None, "CrashLooping"),
    "scheduling-first": ([pod("a", waiting="CrashLoopBackOff"),
                          pod("b", scheduled="Insufficient nvidia.com/gpu")],
                         "nvidia.com/gpu", "GPUsUnavailable"),
    "still-creating": ([pod(waiting="ContainerCreating")], None, None),
    "fetch-failed": ([fetch_failed("fetch failed: access denied to s3://m/x.onnx")], None,
                     "ModelFetchFailed"),
    "fetch-failed-waiting-to-retry": ([fetch_failed("fetch failed: SHA-256 mismatch",
                                                    last=True)], None, "ModelFetchFailed"),
    "fetch-running": ([fetch_running()], None, None),
}


def test_fetch_failure_carries_the_fetch_message():
    problem = pod_problem([fetch_failed("fetch failed: access denied to s3://m/x.onnx (403)")],
                          None)
    assert problem.message == ("pod p cannot fetch its model: fetch failed: access denied to "
                               "s3://m/x.onnx (403)")


@pytest.mark.parametrize("case", sorted(CASES))
def test_pod_problem(case):
    pods, gpu, reason = CASES[case]
    problem = pod_problem(pods, gpu)
    assert (problem.reason if problem else None) == reason
    if problem:
        assert pods[-1]["metadata"]["name"] in problem.message or "pod" in problem.message


def test_transition_time_kept_while_status_holds():
    first = set_condition(None, "Ready", True, "Serving", "ok", 1, "t1")
    again = set_condition([first], "Ready", True, "Serving", "still ok", 2, "t2")
    flipped = set_condition([again], "Ready", False, "NoReadyPods", "down", 2, "t3")
    assert first["lastTransitionTime"] == again["lastTransitionTime"] == "t1"
    assert flipped["lastTransitionTime"] == "t3"
    assert again["observedGeneration"] == 2
