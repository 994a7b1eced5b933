"""The runtime image's Dockerfile, checked without a Docker engine (none here): its
contract with the operator's pod (non-root numeric user, the entrypoint, the port) and
checkov's Dockerfile checks, where nothing fails that is not explained below."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "runtime" / "Dockerfile"

# check -> why it does not apply. Every entry must still be needed (the test fails on a
# stale one), so the list cannot silently grow.
EXPLAINED = {
    "CKV_DOCKER_7": "The tag is pinned through ARG TENSORRT_IMAGE (25.01-py3); checkov "
    "reads `FROM ${TENSORRT_IMAGE}` as an untagged image.",
    "CKV_DOCKER_2": "Kubernetes ignores HEALTHCHECK; the operator renders startup, "
    "readiness and liveness probes on /v2/health/*, and a HEALTHCHECK would have to "
    "know the pod's TLS and port settings.",
}


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_final_stage_runs_the_runtime_as_a_numeric_non_root_user():
    steps = _instructions()
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    users = [arg for op, arg in final if op == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    # Numeric, so the pod's runAsNonRoot can verify it without a passwd lookup.
    assert uid.isdigit() and int(uid) != 0
    assert ("ENTRYPOINT", '["modelserve-runtime"]') in final
    assert ("EXPOSE", "8080") in final


def test_base_image_is_nvidias_tensorrt_image_with_a_pinned_tag():
    args = dict(arg.split("=", 1) for op, arg in _instructions() if op == "ARG" and "=" in arg)
    image = args["TENSORRT_IMAGE"]
    assert image.startswith("nvcr.io/nvidia/tensorrt:")
    assert not image.endswith(":latest")


@pytest.fixture(scope="module")
def checkov() -> str:
    path = subprocess.run(
        [str(ROOT / "hack" / "install-checkov")], capture_output=True, text=True
    )
    if path.returncode != 0:
        pytest.skip(f"checkov could not be installed: {path.stderr[-500:]}")
    return path.stdout.strip().splitlines()[-1]


def test_checkov_finds_nothing_unexplained(checkov):
    result = subprocess.run(
        [checkov, "-f", str(DOCKERFILE), "--framework", "dockerfile", "--quiet", "--compact",
         "-o", "json"],
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout)
    assert report["summary"]["parsing_errors"] == 0
    failed = {f["check_id"]: f["check_name"] for f in report["results"]["failed_checks"]}
    unexplained = {k: v for k, v in failed.items() if k not in EXPLAINED}
    assert not unexplained, f"fix runtime/Dockerfile, or explain in EXPLAINED: {unexplained}"
    assert set(EXPLAINED) <= set(failed), f"stale explanations: {set(EXPLAINED) - set(failed)}"


def test_gpu_and_local_images_install_the_wheel_the_same_way():
    """runtime/Dockerfile (GPU image) and hack/build-images (CPU runtime and operator
    images) both run runtime/install-into-image with the pinned constraints."""
    steps = _instructions()
    runs = [arg for op, arg in steps if op == "RUN"]
    assert any("install-into-image" in run for run in runs), runs
    assert ("COPY", "requirements/constraints.txt runtime/install-into-image /wheels/") in steps
    build_images = (ROOT / "hack" / "build-images").read_text()
    assert "sh /wheels/install-into-image /wheels" in build_images
    assert "requirements/constraints.txt" in build_images
