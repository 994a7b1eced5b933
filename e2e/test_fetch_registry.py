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

from e2e.registry import DistributionRegistry, docker_config

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


def run_fetch(*args: str, secret_dir: pathlib.Path | str = "/nonexistent"
              ) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODELSERVE_STORAGE_SECRET_DIR": str(secret_dir)}
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


# -- a registry that asks for a password (htpasswd) ------------------------------------

USER, PASSWORD = "puller", "e2e-registry-pass"


@pytest.fixture(scope="module")
def private(tmp_path_factory) -> tuple[str, str]:
    """(oci:// URI, sha256) of a model in a registry with Basic auth."""
    server = DistributionRegistry(tmp_path_factory.mktemp("private-registry"),
                                  users={USER: PASSWORD}).start()
    path = tmp_path_factory.mktemp("push-private") / "model.onnx"
    path.write_bytes(os.urandom(1 << 20))
    yield (server.push("models/private:v1", path),
           hashlib.sha256(path.read_bytes()).hexdigest())
    server.stop()


def secret(tmp_path: pathlib.Path, **keys: str) -> pathlib.Path:
    """A directory laid out like the mounted Secret: one file per key."""
    directory = tmp_path / "secret"
    directory.mkdir()
    for key, value in keys.items():
        (directory / key).write_text(value)
    return directory


def host_of(uri: str) -> str:
    return uri.removeprefix("oci://").split("/", 1)[0]


def test_docker_config_secret_pulls_from_a_private_registry(private, tmp_path):
    uri, digest = private
    keys = {".dockerconfigjson": docker_config(host_of(uri), USER, PASSWORD)}
    done = run_fetch("--uri", uri, "--sha256", digest, "--dest", str(tmp_path / "m"),
                     secret_dir=secret(tmp_path, **keys))
    assert done.returncode == 0, done.stderr


def test_username_and_password_keys_pull_too(private, tmp_path):
    uri, digest = private
    done = run_fetch("--uri", uri, "--sha256", digest, "--dest", str(tmp_path / "m"),
                     secret_dir=secret(tmp_path, username=USER, password=PASSWORD))
    assert done.returncode == 0, done.stderr


def test_a_wrong_password_is_access_denied_naming_the_secret(private, tmp_path):
    uri, digest = private
    keys = {".dockerconfigjson": docker_config(host_of(uri), USER, "not-the-password")}
    done = run_fetch("--uri", uri, "--sha256", digest, "--dest", str(tmp_path / "m"),
                     secret_dir=secret(tmp_path, **keys))
    assert done.returncode == 1
    assert f"access denied to {uri}" in done.stderr, done.stderr
    assert "spec.model.secretRef" in done.stderr, done.stderr
    assert not (tmp_path / "m").exists()


def test_no_credentials_says_the_registry_wants_some(private, tmp_path):
    uri, digest = private
    done = run_fetch("--uri", uri, "--sha256", digest, "--dest", str(tmp_path / "m"))
    assert done.returncode == 1
    assert "asks for a user name and password; none were found" in done.stderr, done.stderr
