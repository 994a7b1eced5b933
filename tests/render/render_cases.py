"""Named inputs for the golden-file tests: one ModelDeployment + ModelVersion per shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelserve_operator.api import ModelDeploymentSpec, ModelVersionSpec
from modelserve_operator.render import RenderSettings

SHA = "9f2c" + "0" * 60


@dataclass(frozen=True)
class Case:
    version: dict[str, Any]
    deployment: dict[str, Any] = field(default_factory=lambda: {"modelVersion": "resnet50-v3"})
    revision: int = 3
    role: str = "stable"
    replicas: int | None = 2
    settings: RenderSettings | None = None  # None: RenderSettings() defaults

    def specs(self) -> tuple[ModelDeploymentSpec, ModelVersionSpec]:
        return (ModelDeploymentSpec.model_validate(self.deployment),
                ModelVersionSpec.model_validate(self.version))


def version(**overrides: Any) -> dict[str, Any]:
    """A TensorRT ONNX model on one GPU, fetched from S3; overrides replace top-level keys."""
    base: dict[str, Any] = {
        "model": {"uri": "s3://models/resnet50/v3/model.onnx", "format": "onnx", "sha256": SHA},
        "runtime": {"backend": "tensorrt", "precision": "fp16", "maxBatchSize": 64},
        "resources": {"gpu": {"count": 1}, "memory": "16Gi", "cpu": "4"},
    }
    return {**base, **overrides}


CASES: dict[str, Case] = {
    "gpu-product-count-2": Case(version(
        resources={"gpu": {"count": 2, "product": "NVIDIA-H100-80GB-HBM3"}, "memory": "32Gi"},
        env=[{"name": "LOG_LEVEL", "value": "debug"}],
        args=["--log-level", "debug"],
    )),
    "mig": Case(version(resources={"gpu": {"mig": "1g.10gb"}, "memory": "8Gi"})),
    "cpu-only": Case(version(
        model={"uri": "https://example.com/models/bert.onnx", "format": "onnx"},
        runtime={"backend": "onnxruntime", "precision": "fp32"},
        resources={"gpu": {"count": 0}, "cpu": "2", "memory": "4Gi"},
    )),
    "custom-probes": Case(version(), deployment={
        "modelVersion": "resnet50-v3",
        "probes": {
            "startup": {"periodSeconds": 15, "failureThreshold": 120},
            "readiness": {"timeoutSeconds": 2},
            "liveness": {"initialDelaySeconds": 30, "failureThreshold": 5},
        },
    }),
    "user-overrides": Case(
        version(resources={"gpu": {"count": 1, "product": "NVIDIA-A100-SXM4-80GB"}},
                env=[{"name": "TOKEN", "value": "from-version"}]),
        deployment={
            "modelVersion": "resnet50-v3",
            "pod": {
                "nodeSelector": {"nvidia.com/gpu.product": "Tesla-T4", "pool": "inference"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "dedicated", "value": "ml", "effect": "NoSchedule"},
                    {"key": "dedicated", "operator": "Equal", "value": "ml",
                     "effect": "NoSchedule"},
                ],
                "affinity": {
                    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [
                                {"key": "topology.kubernetes.io/zone", "operator": "In",
                                 "values": ["eu-west-1a"]}]},
                            {"matchExpressions": [
                                {"key": "nvidia.com/gpu.product", "operator": "In",
                                 "values": ["Tesla-T4"]}]},
                        ]}},
                    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 100, "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {
                                "modelserve.io/deployment": "resnet50"}}}}]},
                },
                "env": [
                    {"name": "MODELSERVE_BACKEND", "value": "torch"},
                    {"name": "HOME", "value": "/home/model"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s3",
                                                                     "key": "token"}}},
                ],
                "volumes": [
                    {"name": "cache", "hostPath": {"path": "/var/cache"}},
                    {"name": "creds", "secret": {"secretName": "s3-creds"}},
                ],
                "volumeMounts": [
                    {"name": "creds", "mountPath": "/var/run/creds", "readOnly": True},
                    {"name": "creds", "mountPath": "/tmp"},
                ],
                "annotations": {"modelserve.io/model-version": "spoofed",
                                "prometheus.io/scrape": "true"},
                "labels": {"team": "vision", "modelserve.io/revision": "99"},
                "runtimeClassName": "nvidia",
                "serviceAccountName": "model-reader",
                "imagePullSecrets": ["regcred"],
                "priorityClassName": "inference-high",
            },
        },
    ),
    "pvc": Case(version(
        model={"uri": "pvc://model-store/resnet50/v3/model.plan", "format": "tensorrt-plan"},
    )),
    "recreate": Case(version(), deployment={
        "modelVersion": "resnet50-v3", "rollout": {"strategy": "Recreate"},
    }),
    "hpa-owned-replicas": Case(version(), replicas=None, role="canary", revision=4),
    "fallback": Case(version(
        model={"uri": "oci://registry.example.com/models/resnet18:cpu", "format": "onnx"},
        runtime={"backend": "onnxruntime", "precision": "fp32",
                 "image": "registry.example.com/modelserve/runtime-cpu:0.1.0"},
        resources={"gpu": {"count": 0}},
    ), role="fallback", revision=2, replicas=1),
    # Credentials from a Secret, a self-hosted S3 store, the node cache switched on by the
    # ModelDeployment where the chart installed it.
    "s3-compatible-store": Case(
        version(model={
            "uri": "s3://models/resnet50/v3/model.onnx", "format": "onnx", "sha256": SHA,
            "secretRef": {"name": "model-store"},
            "s3": {"endpoint": "http://seaweedfs.storage:8333", "region": "us-east-1",
                   "forcePathStyle": True},
        }),
        deployment={"modelVersion": "resnet50-v3", "modelCache": {"enabled": True}},
        settings=RenderSettings(model_cache_path="/var/lib/modelserve/models",
                                model_cache_max_size="200Gi"),
    ),
    # A registry inside the cluster; the chart turns the cache on for everyone, this
    # ModelDeployment opts out.
    "oci-registry": Case(
        version(model={"uri": "oci://registry.models:5000/vision/resnet50:v3", "format": "onnx",
                       "sha256": SHA, "secretRef": {"name": "regcred"},
                       "oci": {"plainHttp": True}}),
        deployment={"modelVersion": "resnet50-v3", "modelCache": {"enabled": False}},
        settings=RenderSettings(model_cache_path="/var/lib/modelserve/models",
                                model_cache_default=True),
    ),
}
