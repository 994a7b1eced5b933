"""`modelserve-runtime fetch` of gs:// through google-cloud-storage against fake-gcs-server
(e2e/gcs_server.py says what that server is and is not). No cluster: the init
container's command as a process."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from e2e.gcs_server import FakeGcs

RUNTIME = str(pathlib.Path(sys.executable).parent / "modelserve-runtime")
DATA = os.urandom(5 << 20) + b"model"  # several 1 MiB reads


@pytest.fixture(scope="module")
def gcs(tmp_path_factory) -> FakeGcs:
    work = tmp_path_factory.mktemp("gcs")
    blob = work / "model.onnx"
    blob.write_bytes(DATA)
    server = FakeGcs(work)
    server.add("models", "resnet50/v3/model.onnx", blob)
    server.start()
    yield server
    server.stop()


def run_fetch(gcs: FakeGcs, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODELSERVE_STORAGE_SECRET_DIR": "/nonexistent",
           "STORAGE_EMULATOR_HOST": gcs.endpoint, "GOOGLE_CLOUD_PROJECT": "test"}
    return subprocess.run([RUNTIME, "fetch", *args], env=env, capture_output=True,
                          text=True, timeout=180)


def test_fetches_and_verifies(gcs, tmp_path):
    digest = hashlib.sha256(DATA).hexdigest()
    dest = tmp_path / "m" / "model.onnx"
    done = run_fetch(gcs, "--uri", "gs://models/resnet50/v3/model.onnx", "--sha256", digest,
                     "--dest", str(dest))
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == DATA


def test_missing_object_is_not_found(gcs, tmp_path):
    done = run_fetch(gcs, "--uri", "gs://models/resnet50/v9/model.onnx", "--dest",
                     str(tmp_path / "m"))
    assert done.returncode == 1
    assert "gs://models/resnet50/v9/model.onnx not found" in done.stderr, done.stderr


def test_digest_mismatch_refuses_the_bytes(gcs, tmp_path):
    done = run_fetch(gcs, "--uri", "gs://models/resnet50/v3/model.onnx", "--sha256", "0" * 64,
                     "--dest", str(tmp_path / "m" / "model.onnx"))
    assert done.returncode == 1
    assert "SHA-256 mismatch for gs://models/resnet50/v3/model.onnx" in done.stderr
    assert list((tmp_path / "m").iterdir()) == []
