"""`modelserve-runtime fetch` against a real OCI registry (the CNCF distribution registry,
built by hack/install-tools), the model pushed with oras as a user pushes it. No cluster:
the init container's command as a process; e2e/test_model_storage.py has the pods."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
import urllib.request

import pytest

from e2e.registry import DistributionRegistry

RUNTIME = str(pathlib.Path(sys.executable).parent / "modelserve-runtime")


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> DistributionRegistry:
    server = DistributionRegistry(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pushed(registry, tmp_path_factory) -> tuple[str, str, bytes]:
    data = os.urandom(3 << 20) + b"model"
    path = tmp_path_factory.mktemp("push") / "model.onnx"
    path.write_bytes(data)
    return registry.push("models/resnet50:v3", path), hashlib.sha256(data).hexdigest(), data


def run_fetch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODELSERVE_STORAGE_SECRET_DIR": "/nonexistent"}
    return subprocess.run([RUNTIME, "fetch", "--oci-plain-http", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def test_pulls_the_pushed_layer_and_checks_both_digests(pushed, tmp_path):
    uri, digest, data = pushed
    dest = tmp_path / "m" / "model.onnx"
    done = run_fetch("--uri", uri, "--sha256", digest, "--dest", str(dest))
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == data


def test_by_digest_of_the_manifest(registry, pushed, tmp_path):
    _, digest, _ = pushed
    head = urllib.request.Request(
        f"http://{registry.address}/v2/models/resnet50/manifests/v3", method="HEAD",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(head) as answer:
        manifest = answer.headers["Docker-Content-Digest"]
    pinned = f"oci://{registry.address}/models/resnet50@{manifest}"
    done = run_fetch("--uri", pinned, "--sha256", digest, "--dest", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr


def test_missing_tag_is_not_found(registry, pushed, tmp_path):
    done = run_fetch("--uri", f"oci://{registry.address}/models/resnet50:v9", "--dest",
                     str(tmp_path / "m"))
    assert done.returncode == 1
    assert f"oci://{registry.address}/models/resnet50:v9" in done.stderr
    assert "not found" in done.stderr, done.stderr


def test_digest_mismatch_refuses_the_bytes(pushed, tmp_path):
    uri, digest, _ = pushed
    done = run_fetch("--uri", uri, "--sha256", "0" * 64, "--dest", str(tmp_path / "m"))
    assert done.returncode == 1
    assert f"SHA-256 mismatch for {uri}" in done.stderr and digest in done.stderr
