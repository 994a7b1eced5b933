"""Services: one per revision (for weighted routes), one user-facing per ModelDeployment."""

from __future__ import annotations

from typing import Any

from modelserve_operator.render import labels, names
from modelserve_operator.render.settings import Meta, RenderSettings


def _service(md: Meta, name: str, metadata_labels: dict[str, str],
             selector: dict[str, str], settings: RenderSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": md.namespace,
            "labels": metadata_labels,
            "ownerReferences": [md.owner_reference()],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            # kubernetes.io/h2c: gRPC is HTTP/2 without TLS upgrade; Gateway API
            # implementations and Istio read it to speak HTTP/2 to the pods.
            "ports": [{"name": "http", "port": settings.port, "targetPort": "http",
                       "protocol": "TCP", "appProtocol": "http"},
                      {"name": "grpc", "port": settings.grpc_port, "targetPort": "grpc",
                       "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}],
        },
    }


def render_revision_service(md: Meta, revision: int, role: str,
                            settings: RenderSettings) -> dict[str, Any]:
    """The Service of one revision, named like its Deployment; HTTPRoute and
    VirtualService backends weight these."""
    return _service(
        md,
        names.deployment_name(md.name, revision, role),
        labels.revision_labels(md.name, revision, role),
        labels.selector_labels(md.name, revision, role),
        settings,
    )


def render_service(md: Meta, settings: RenderSettings, pool: str = "primary") -> dict[str, Any]:
    """The Service users call, named after the ModelDeployment.

    It selects every primary pod of the ModelDeployment (stable and canary alike, never
    the fallback), so for the `service` provider the traffic split is the replica ratio;
    the other providers route to the revision Services and this one stays a stable
    in-cluster name. Its selector never changes during a rollout, so nothing is written.
    `pool="fallback"` points it at the warm fallback while no primary pod is ready.
    """
    selector = {**labels.serving_selector(md.name), labels.POOL: pool}
    return _service(md, names.service_name(md.name), labels.common_labels(md.name),
                    selector, settings)


def endpoint_url(md_name: str, namespace: str, settings: RenderSettings) -> str:
    """In-cluster URL of the model's Open Inference Protocol API (for status.endpoint)."""
    host = f"{names.service_name(md_name)}.{namespace}.svc.{settings.cluster_domain}"
    return f"http://{host}:{settings.port}/v2/models/{md_name}"
