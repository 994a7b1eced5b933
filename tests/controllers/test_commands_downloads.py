"""`modelserve status` shows the model download of pods still initialising."""

from modelserve_operator.commands import fetching_pods, latest_progress


def pod(name, state):
    return {"metadata": {"name": name}, "status": {"initContainerStatuses": [
        {"name": "fetch-model", "state": state}]}}


def test_only_pods_whose_fetch_is_running():
    pods = [pod("b", {"running": {}}), pod("a", {"running": {}}),
            pod("done", {"terminated": {"exitCode": 0}}),
            {"metadata": {"name": "pending"}, "status": {}}]
    assert fetching_pods(pods) == ["a", "b"]


def test_latest_progress_line_wins():
    log = ("fetch: progress s3://m/x.onnx: 1.0 GiB of 4.0 GiB (25%), 100.0 MiB/s, about 31 s left\n"
           "fetch: s3://m/x.onnx: connection reset; retrying in 1.0 s (attempt 2 of 6)\n"
           "fetch: progress s3://m/x.onnx: 2.0 GiB of 4.0 GiB (50%), 90.0 MiB/s, about 23 s left\n")
    assert latest_progress(log) == ("s3://m/x.onnx: 2.0 GiB of 4.0 GiB (50%), 90.0 MiB/s, "
                                    "about 23 s left")
    assert latest_progress("").startswith("started, no progress line yet")


def test_the_prefix_is_the_one_the_runtime_prints():
    from modelserve_operator.commands import FETCH_PROGRESS_PREFIX
    from modelserve_runtime.fetch.progress import PREFIX

    assert FETCH_PROGRESS_PREFIX == PREFIX
