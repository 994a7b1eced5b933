"""Building and reading modelserve objects in e2e tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from e2e.kube import Kubectl, eventually

API = "modelserve.io/v1alpha1"


def version(name: str, gpus: int = 1, product: str | None = "NVIDIA-H100-80GB-HBM3",
            backend: str = "onnxruntime", fmt: str = "onnx", batch: int | None = None) -> dict:
    gpu: dict = {"count": gpus}
    if product:
        gpu["product"] = product
    runtime: dict = {"backend": backend}
    if batch:
        runtime["maxBatchSize"] = batch
    return {"apiVersion": API, "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": {"uri": f"https://models.example.com/{name}.onnx", "format": fmt},
                     "runtime": runtime, "resources": {"gpu": gpu}}}


def deployment(name: str, model_version: str | None = None, replicas: int = 1,
               **spec) -> dict:
    if model_version:
        spec["modelVersion"] = model_version
    return {"apiVersion": API, "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, **spec}}


def status(kubectl: Kubectl, namespace: str, name: str) -> dict:
    return (kubectl.get("md", name, namespace) or {}).get("status", {})


def condition(st: dict, type_: str) -> tuple[str, str]:
    for c in st.get("conditions", []):
        if c["type"] == type_:
            return c["status"], c["reason"]
    return "", ""


def wait_status(kubectl: Kubectl, namespace: str, name: str, timeout: float = 60,
                **expected) -> dict:
    """Poll until every `expected` status field has the given value (for this generation)."""
    def check():
        md = kubectl.get("md", name, namespace)
        st = md.get("status", {})
        if st.get("observedGeneration") != md["metadata"]["generation"]:
            return False
        return all(st.get(k) == v for k, v in expected.items()) and st
    return eventually(check, timeout=timeout, what=f"md/{name} status {expected}")


def wait_phase(kubectl: Kubectl, namespace: str, name: str, phase: str,
               timeout: float = 60) -> dict:
    return wait_status(kubectl, namespace, name, timeout, phase=phase)


def modelserve(kubectl: Kubectl, *args: str, check: bool = True,
               ) -> subprocess.CompletedProcess[str]:
    """The `modelserve` CLI as a user runs it."""
    env = {**os.environ, "KUBECONFIG": kubectl.kubeconfig, "KUBECTL": kubectl.binary}
    result = subprocess.run([sys.executable, "-m", "modelserve_operator.cli", *args],
                            capture_output=True, text=True, env=env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"modelserve {' '.join(args)}: {result.stderr}")
    return result


def route_weights(kubectl: Kubectl, namespace: str, name: str,
                  kind: str = "httproute") -> dict[str, int]:
    route = kubectl.get(kind, name, namespace)
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


def replicas(kubectl: Kubectl, namespace: str, deployment_name: str) -> int | None:
    dep = kubectl.get("deploy", deployment_name, namespace, check=False)
    return None if dep is None else dep["spec"].get("replicas")


def timed(fn) -> tuple[float, object]:
    started = time.monotonic()
    result = fn()
    return time.monotonic() - started, result
