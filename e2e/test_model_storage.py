"""Models from a real S3 store (SeaweedFS) into real runtime pods on the real node.

The store runs on this host; pods reach it through the pod network's gateway, as they
reach e2e/models.py's HTTP server. Credentials travel only through a Secret the
ModelVersion names: the operator renders the mount and never reads it.
"""

from __future__ import annotations

import time

import pytest

from e2e.kube import Kubectl, eventually
from e2e.metrics_stack import host_address
from e2e.models import ModelStore
from e2e.object_store import IDENTITIES, SeaweedS3
from e2e.objects import condition, deployment, modelserve, status, wait_status
from e2e.registry import DistributionRegistry, docker_config

API = "modelserve.io/v1alpha1"
FAST_PROBES = {"startup": {"periodSeconds": 1}, "readiness": {"periodSeconds": 1}}
CANARY = {"strategy": "Canary", "scaleDownDelaySeconds": 5, "progressDeadlineSeconds": 30,
          "canary": {"steps": [{"setWeight": 50}, {"setWeight": 100}]}}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> SeaweedS3:
    s3 = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"), bind="0.0.0.0",
                   advertise=host_address()).start()
    yield s3
    s3.stop()


def upload(store: SeaweedS3, models: ModelStore, model: str) -> str:
    return store.put(f"e2e/{model}.onnx", (models.dir / f"{model}.onnx").read_bytes())


def store_secret(store: SeaweedS3, name: str, identity: str = "reader") -> dict:
    key, secret, _ = IDENTITIES.get(identity, (identity, "not-the-secret", []))
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
                           "AWS_ENDPOINT_URL": store.endpoint, "AWS_REGION": "us-east-1"}}


def s3_version(name: str, uri: str, sha256: str, secret: str = "model-store") -> dict:
    return {"apiVersion": API, "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": {"uri": uri, "format": "onnx", "sha256": sha256,
                               "secretRef": {"name": secret},
                               "s3": {"forcePathStyle": True}},
                     "runtime": {"backend": "onnxruntime", "maxBatchSize": 8},
                     "resources": {"gpu": {"count": 0}, "cpu": "50m", "memory": "400Mi"}}}


def degraded_message(st: dict) -> str:
    return next((c.get("message", "") for c in st.get("conditions", [])
                 if c["type"] == "Degraded"), "")


def serve_from_s3(kubectl, namespace, store, models, name="m", **spec) -> None:
    kubectl.apply([store_secret(store, "model-store"),
                   s3_version("v1", upload(store, models, "good-v1"), models.sha256("good-v1")),
                   deployment(name, "v1", replicas=1, probes=FAST_PROBES, **spec)], namespace)
    wait_status(kubectl, namespace, name, phase="Ready", timeout=180)


def predict_version(kubectl: Kubectl, namespace: str, name: str = "m") -> str:
    return modelserve(kubectl, "predict", name, "-n", namespace, "--input",
                      "x=[[50,1,2,3]]").stdout


def test_model_in_a_bucket_serves(kubectl, namespace, operator, models, store):
    serve_from_s3(kubectl, namespace, store, models)
    pod = kubectl.get("pods", namespace=namespace)["items"][0]
    fetch = pod["status"]["initContainerStatuses"][0]
    assert fetch["state"]["terminated"]["exitCode"] == 0
    # The Secret reaches the fetch container only, as files; the runtime never sees it.
    runtime = pod["spec"]["containers"][0]
    assert not [m for m in runtime["volumeMounts"] if m["name"] == "model-credentials"]
    assert "v1" in predict_version(kubectl, namespace)


def test_wrong_credentials_degrade_with_the_reason(kubectl, namespace, operator, models,
                                                   store):
    uri = upload(store, models, "good-v1")
    kubectl.apply([store_secret(store, "bad-keys", identity="AKIDWRONG"),
                   s3_version("v1", uri, models.sha256("good-v1"), secret="bad-keys"),
                   deployment("m", "v1", replicas=1, probes=FAST_PROBES)], namespace)

    def degraded():
        st = status(kubectl, namespace, "m")
        return condition(st, "Degraded") == ("True", "ModelFetchFailed") and st
    st = eventually(degraded, timeout=120, what="Degraded/ModelFetchFailed")
    message = degraded_message(st)
    assert f"access denied to {uri}" in message and "InvalidAccessKeyId" in message, message
    assert "not-the-secret" not in message


def test_digest_mismatch_degrades_and_the_old_revision_keeps_serving(kubectl, namespace,
                                                                      operator, models, store):
    serve_from_s3(kubectl, namespace, store, models, rollout=CANARY)
    # v2 names good-v2's object with good-v1's digest: someone replaced the object.
    kubectl.apply(s3_version("v2", upload(store, models, "good-v2"), models.sha256("good-v1")),
                  namespace)
    kubectl.apply(deployment("m", "v2", replicas=1, probes=FAST_PROBES, rollout=CANARY),
                  namespace)

    def rolled_back():
        st = status(kubectl, namespace, "m")
        return condition(st, "Degraded")[0] == "True" and st
    st = eventually(rolled_back, timeout=180, what="Degraded after the digest mismatch")
    assert st["revision"] == 1, st
    pods = kubectl.get("pods", namespace=namespace)["items"]
    fetch_messages = [
        s.get(state, {}).get("terminated", {}).get("message", "")
        for p in pods for s in p["status"].get("initContainerStatuses", [])
        for state in ("state", "lastState")]
    assert any("SHA-256 mismatch" in m for m in fetch_messages) or \
        "SHA-256 mismatch" in degraded_message(st), (fetch_messages, st)
    assert "v1" in predict_version(kubectl, namespace)


@pytest.fixture(scope="module")
def node_cache(operator, tmp_path_factory):
    """The session's operator, upgraded to render the node cache (a host directory here,
    since real-0 is this host), then back to its settings."""
    import os

    path = tmp_path_factory.mktemp("node-model-cache")
    os.chown(path, 1000, 1000)
    path.chmod(0o750)
    operator.values = {**operator.values, "modelCache.hostPath": str(path),
                       "modelCache.maxSize": "1Gi"}
    operator.install()
    yield path
    operator.values = {k: v for k, v in operator.values.items()
                       if not k.startswith("modelCache.")}
    operator.install()


def test_second_replica_starts_without_a_download(kubectl, namespace, operator, models,
                                                  store, node_cache):
    serve_from_s3(kubectl, namespace, store, models, modelCache={"enabled": True})
    [entry] = (node_cache / "sha256").iterdir()
    assert entry.name == models.sha256("good-v1")
    first = kubectl.get("pods", namespace=namespace)["items"][0]["metadata"]["name"]
    started = time.monotonic()
    kubectl.apply(deployment("m", "v1", replicas=2, probes=FAST_PROBES,
                             modelCache={"enabled": True}), namespace)
    wait_status(kubectl, namespace, "m", phase="Ready", ready="2/2", timeout=120)
    print(f"\nsecond replica Ready {time.monotonic() - started:.1f} s after the scale-up "
          f"(warm node cache)")
    [second] = [p["metadata"]["name"] for p in kubectl.get("pods", namespace=namespace)["items"]
                if p["metadata"]["name"] != first]
    log = kubectl.run("logs", second, "-c", "fetch-model", "-n", namespace).stdout
    assert "node cache hit: no download" in log, log


REGISTRY_USER = ("puller", "e2e-registry-pass")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    server = DistributionRegistry(tmp_path_factory.mktemp("registry"), bind="0.0.0.0",
                                  advertise=host_address(),
                                  users=dict([REGISTRY_USER])).start()
    yield server
    server.stop()


def test_model_in_a_private_oci_registry_serves(kubectl, namespace, operator, models,
                                                registry):
    """The registry asks for a password; the pull secret is the one `kubectl create secret
    docker-registry` makes, named by spec.model.secretRef."""
    uri = registry.push("models/good:v1", models.dir / "good-v1.onnx")
    user, password = REGISTRY_USER
    kubectl.apply([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry-pull"},
         "type": "kubernetes.io/dockerconfigjson",
         "stringData": {".dockerconfigjson": docker_config(registry.address, user, password)}},
        {"apiVersion": API, "kind": "ModelVersion", "metadata": {"name": "v1"},
         "spec": {"model": {"uri": uri, "format": "onnx", "sha256": models.sha256("good-v1"),
                            "secretRef": {"name": "registry-pull"},
                            "oci": {"plainHttp": True}},
                  "runtime": {"backend": "onnxruntime", "maxBatchSize": 8},
                  "resources": {"gpu": {"count": 0}, "cpu": "50m", "memory": "400Mi"}}},
        deployment("m", "v1", replicas=1, probes=FAST_PROBES)], namespace)
    wait_status(kubectl, namespace, "m", phase="Ready", timeout=180)
    assert "v1" in predict_version(kubectl, namespace)
