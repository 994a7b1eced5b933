"""`modelserve-runtime fetch` as a real process against a real S3 store (SeaweedFS).

No cluster needed: these run the init container's command the way the pod does, with the
Secret laid out as files, and check what a user would see: the file, or one line naming
the URI and what to fix.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

from e2e.object_store import SeaweedS3

# The command the pod's init container runs, from this environment.
RUNTIME = str(pathlib.Path(sys.executable).parent / "modelserve-runtime")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> SeaweedS3:
    s3 = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
    yield s3
    s3.stop()


@pytest.fixture(scope="module")
def model(store) -> tuple[str, str, bytes]:
    data = os.urandom(3 << 20) + b"model"
    uri = store.put("resnet50/v3/model.onnx", data)
    return uri, hashlib.sha256(data).hexdigest(), data


def run_fetch(*args: str, secret: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ}
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]  # only what the test gives: a Secret directory or flags
    env["MODELSERVE_STORAGE_SECRET_DIR"] = str(secret or "/nonexistent")
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return subprocess.run([RUNTIME, "fetch", *args],
                          env=env, capture_output=True, text=True, timeout=180)


def test_fetches_and_verifies_with_keys_and_endpoint_from_the_secret(store, model, tmp_path):
    uri, digest, data = model
    secret = store.secret_dir(tmp_path / "secret")
    dest = tmp_path / "models" / "model.onnx"
    done = run_fetch("--uri", uri, "--sha256", digest, "--dest", str(dest), secret=secret)
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == data
    assert f"sha256 {digest}" in done.stdout


def test_endpoint_and_path_style_from_the_model_version(store, model, tmp_path):
    uri, digest, _ = model
    secret = store.secret_dir(tmp_path / "secret", with_endpoint=False)
    (secret / "AWS_S3_FORCE_PATH_STYLE").unlink()
    dest = tmp_path / "model.onnx"
    done = run_fetch("--uri", uri, "--sha256", digest, "--dest", str(dest),
                     "--s3-endpoint", store.endpoint, "--s3-path-style", secret=secret)
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("identity,expected", [
    ("not-a-key", "access denied to s3://models/resnet50/v3/model.onnx at http://"),
    ("outsider", "may s3:GetObject on bucket 'models'"),
])
def test_wrong_credentials_say_so_and_leave_nothing(store, model, tmp_path, identity,
                                                    expected):
    uri, digest, _ = model
    secret = store.secret_dir(tmp_path / "secret", identity)
    dest = tmp_path / "models" / "model.onnx"
    done = run_fetch("--uri", uri, "--sha256", digest, "--dest", str(dest), secret=secret)
    assert done.returncode == 1
    assert done.stderr.startswith("fetch failed: ") and expected in done.stderr
    assert "retrying" not in done.stderr  # a 403 is not worth a retry
    assert not dest.exists()
    assert "not-a-secret" not in done.stderr and "outsider-secret" not in done.stderr


def test_missing_object_is_not_found(store, tmp_path):
    secret = store.secret_dir(tmp_path / "secret")
    done = run_fetch("--uri", "s3://models/resnet50/v9/model.onnx", "--dest",
                     str(tmp_path / "m.onnx"), secret=secret)
    assert done.returncode == 1
    assert "s3://models/resnet50/v9/model.onnx not found at http://" in done.stderr
    assert "check the bucket and key in spec.model.uri" in done.stderr


def test_digest_mismatch_refuses_the_bytes(store, model, tmp_path):
    uri, digest, _ = model
    secret = store.secret_dir(tmp_path / "secret")
    dest = tmp_path / "models" / "model.onnx"
    done = run_fetch("--uri", uri, "--sha256", "0" * 64, "--dest", str(dest), secret=secret)
    assert done.returncode == 1
    assert f"SHA-256 mismatch for {uri}" in done.stderr and digest in done.stderr
    assert list(dest.parent.iterdir()) == []


def test_no_credentials_points_at_secret_ref_and_service_account(store, model, tmp_path):
    uri = model[0]
    done = run_fetch("--uri", uri, "--dest", str(tmp_path / "m"), "--s3-endpoint",
                     store.endpoint, "--s3-path-style")
    assert done.returncode == 1
    assert "spec.model.secretRef" in done.stderr and "serviceAccountName" in done.stderr


def test_large_model_streams_in_bounded_memory(store, tmp_path):
    size = 384 << 20
    blob = tmp_path / "big.onnx"
    digest = hashlib.sha256()
    with blob.open("wb") as f:
        for _ in range(size >> 20):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            f.write(chunk)
    uri = store.put("big/model.onnx", blob)
    blob.unlink()
    secret = store.secret_dir(tmp_path / "secret")
    dest = tmp_path / "models" / "model.onnx"
    script = (
        "import resource, sys\n"
        "from modelserve_runtime.fetch import main\n"
        "code = main(sys.argv[1:])\n"
        "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "MODELSERVE_STORAGE_SECRET_DIR": str(secret)}
    done = subprocess.run([sys.executable, "-c", script, "--uri", uri, "--sha256",
                           digest.hexdigest(), "--dest", str(dest)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert dest.stat().st_size == size
    rss_mib = int(done.stdout.split("maxrss_kib")[1]) / 1024
    # The interpreter and botocore take ~60-90 MiB and the peak was 118-126 MiB on a quiet
    # machine for 192 and 384 MiB models alike, 177 MiB once on a loaded one; whatever
    # the load, a model held in memory would show as more than half of it.
    assert rss_mib < size / 2 / 2**20, f"peak RSS {rss_mib:.0f} MiB for a {size >> 20} MiB model"


def test_two_pods_on_one_node_download_once(store, model, tmp_path):
    uri, digest, data = model
    secret = store.secret_dir(tmp_path / "secret")
    cache = tmp_path / "node-cache"
    env = {**os.environ, "MODELSERVE_STORAGE_SECRET_DIR": str(secret)}
    pods = [subprocess.Popen(
        [RUNTIME, "fetch", "--uri", uri, "--sha256",
         digest, "--dest", str(tmp_path / f"pod{i}" / "model.onnx"), "--cache-dir",
         str(cache), "--cache-max-size", "1Gi"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    outputs = [p.communicate(timeout=180) for p in pods]
    assert all(p.returncode == 0 for p in pods), outputs
    said = [out for out, _ in outputs]
    assert sum("node cache filled" in s for s in said) == 1
    assert sum("node cache hit: no download" in s for s in said) == 2
    for i in range(3):
        assert (tmp_path / f"pod{i}" / "model.onnx").read_bytes() == data
