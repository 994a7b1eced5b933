"""Inputs to rendering that are not in the spec: who owns the objects, operator config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelserve_operator import API_VERSION


@dataclass(frozen=True)
class Meta:
    """The identity of the ModelDeployment being rendered (ownerReferences need the uid)."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Meta:
        """From a ModelDeployment object (or Kopf body) as read from the API server."""
        metadata = obj["metadata"]
        return cls(name=metadata["name"], namespace=metadata["namespace"], uid=metadata["uid"])

    def owner_reference(self) -> dict[str, Any]:
        """Makes every child garbage-collected with the ModelDeployment: no finalizer needed."""
        return {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class RenderSettings:
    """Operator-wide configuration (Helm values), the same for every ModelDeployment."""

    # Used when a ModelVersion does not name spec.runtime.image.
    runtime_image: str = "ghcr.io/modelserve/runtime:0.1.0"
    # Image of the fetch init container; None reuses the pod's runtime image, which the
    # node pulls anyway, so fetching costs no second image pull.
    fetch_image: str | None = None
    port: int = 8080
    # The runtime's Open Inference Protocol gRPC port (probes stay on the HTTP one).
    grpc_port: int = 8081
    cluster_domain: str = "cluster.local"
    # runtimeClassName for GPU pods when the user sets none (e.g. "nvidia" on clusters
    # where the NVIDIA container runtime is not the default). CPU pods never get it.
    gpu_runtime_class: str | None = None
    # Node-local model cache (chart values modelCache.*): a hostPath directory, present on
    # every node and writable by the runtime user, shared by the node's model pods. None
    # turns the cache off whatever a ModelDeployment says.
    model_cache_path: str | None = None
    # Evict models no pod on the node uses beyond this size, e.g. "200Gi"; None: no limit.
    model_cache_max_size: str | None = None
    # Whether ModelDeployments that do not set spec.modelCache.enabled use the cache.
    model_cache_default: bool = False
