"""The CRDs on a real API server: valid objects accepted, each CEL rule enforced."""

from __future__ import annotations

import copy

import pytest

from e2e.kube import Kubectl

API = "modelserve.io/v1alpha1"

VERSION_SPEC = {
    "model": {"uri": "https://models.example.com/m.onnx", "format": "onnx"},
    "runtime": {"backend": "onnxruntime"},
    "resources": {"gpu": {"count": 1}},
}


def model_version(name: str = "mv", **overrides) -> dict:
    spec = copy.deepcopy(VERSION_SPEC)
    for path, value in overrides.items():
        node = spec
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return {"apiVersion": API, "kind": "ModelVersion", "metadata": {"name": name}, "spec": spec}


def model_deployment(name: str = "md", **spec) -> dict:
    return {"apiVersion": API, "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": spec}


def test_valid_model_version_is_accepted_with_defaults(kubectl: Kubectl, namespace: str):
    kubectl.apply(model_version("resnet"), namespace)
    stored = kubectl.get("mv", "resnet", namespace)
    assert stored["spec"]["runtime"]["maxBatchSize"] == 8  # defaulted by the API server
    listed = kubectl.run("get", "modelserve", "-n", namespace).stdout
    assert "resnet" in listed  # the `modelserve` category lists our kinds


def test_valid_model_deployment_is_accepted(kubectl: Kubectl, namespace: str):
    kubectl.apply(model_deployment("a", modelVersion="resnet", replicas=2), namespace)
    kubectl.apply(model_deployment("b", template=VERSION_SPEC, rollout={
        "strategy": "Canary",
        "canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "30s"}},
                             {"analysis": {}}, {"setWeight": 50}, {"pause": {}}]},
    }, autoscaling={"minReplicas": 1, "maxReplicas": 4, "targetGPUUtilization": 70}),
        namespace)
    assert "b" in kubectl.run("get", "md", "-n", namespace).stdout


REJECTED = {
    "gpu-count-negative": (
        model_version(**{"resources.gpu.count": -1}), "spec.resources.gpu.count"),
    "mig-with-several-gpus": (
        model_version(**{"resources.gpu": {"count": 2, "mig": "1g.10gb"}}),
        "spec.resources.gpu.mig"),
    "both-version-and-template": (
        model_deployment(modelVersion="x", template=VERSION_SPEC), "spec.modelVersion"),
    "neither-version-nor-template": (model_deployment(replicas=1), "spec.modelVersion"),
    "weight-over-100": (
        model_deployment(modelVersion="x", rollout={"canary": {"steps": [{"setWeight": 150}]}}),
        "setWeight"),
    "weights-decreasing": (
        model_deployment(modelVersion="x", rollout={"canary": {"steps": [
            {"setWeight": 50}, {"setWeight": 10}]}}),
        "setWeight values must not decrease"),
    "step-with-two-actions": (
        model_deployment(modelVersion="x", rollout={"canary": {"steps": [
            {"setWeight": 10, "pause": {}}]}}),
        "exactly one of setWeight, pause or analysis"),
    "min-above-max-replicas": (
        model_deployment(modelVersion="x", autoscaling={"minReplicas": 5, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas"),
    "gpu-target-zero": (
        model_deployment(modelVersion="x", autoscaling={
            "maxReplicas": 2, "targetGPUUtilization": 0}),
        "spec.autoscaling.targetGPUUtilization"),
    "unknown-autoscaling-provider": (
        model_deployment(modelVersion="x", autoscaling={"maxReplicas": 2, "provider": "magic"}),
        "spec.autoscaling.provider"),
    "unknown-backend": (model_version(**{"runtime.backend": "tflite"}), "spec.runtime.backend"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_bad_object_is_rejected_naming_the_field(kubectl: Kubectl, namespace: str, case: str):
    obj, field = REJECTED[case]
    result = kubectl.apply(obj, namespace, check=False)
    assert result.returncode != 0, f"{case} was accepted"
    assert field in result.stderr, result.stderr


def test_model_version_spec_is_immutable(kubectl: Kubectl, namespace: str):
    kubectl.apply(model_version("frozen"), namespace)
    changed = model_version("frozen", **{"runtime.maxBatchSize": 32})
    result = kubectl.apply(changed, namespace, check=False)
    assert result.returncode != 0
    assert "spec is immutable" in result.stderr
    # Metadata stays editable: labels are how people organise versions.
    kubectl.run("label", "mv", "frozen", "team=vision", "-n", namespace)


def test_explain_shows_descriptions(kubectl: Kubectl):
    out = kubectl.run("explain", "md.spec").stdout
    assert "Which version serves" in out
    assert "modelVersion" in out and "Name of the ModelVersion to serve" in out
    deep = kubectl.run("explain", "md.spec.rollout.canary.steps.setWeight").stdout
    assert "Percent of traffic to the canary" in deep


def test_scale_subresource(kubectl: Kubectl, namespace: str):
    kubectl.apply(model_deployment("scaled", modelVersion="x", replicas=1), namespace)
    kubectl.run("scale", "md", "scaled", "--replicas=3", "-n", namespace)
    assert kubectl.get("md", "scaled", namespace)["spec"]["replicas"] == 3
