"""Traffic providers: how the user-facing route splits requests between revisions.

A provider turns a `Split` into the routing objects it owns. Adding a provider means
adding one class here and one entry in PROVIDERS; the rollout logic never changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from modelserve_operator.api import ModelDeploymentSpec
from modelserve_operator.render import labels, names
from modelserve_operator.render.service import render_service
from modelserve_operator.render.settings import Meta, RenderSettings


@dataclass(frozen=True)
class Split:
    """Where requests go: stable, an optional canary with a weight, or the fallback."""

    stable_revision: int
    canary_revision: int | None = None
    canary_weight: int = 0
    fallback: bool = False


class Provider(Protocol):
    name: ClassVar[str]
    # True when the weight is exact (a proxy splits requests); False when it is only the
    # replica ratio of the pods behind one Service.
    exact_weights: ClassVar[bool]
    # The kinds of routing objects it owns (the operator deletes stale ones).
    kinds: ClassVar[tuple[str, ...]]

    def render(self, md: Meta, spec: ModelDeploymentSpec, split: Split,
               settings: RenderSettings) -> list[dict[str, Any]]: ...


def _backends(md: Meta, split: Split) -> list[tuple[str, int]]:
    """(revision Service name, weight) pairs, stable first."""
    if split.fallback:
        return [(names.deployment_name(md.name, 0, "fallback"), 100)]
    stable = names.deployment_name(md.name, split.stable_revision, "stable")
    if split.canary_revision is None:
        return [(stable, 100)]
    canary = names.deployment_name(md.name, split.canary_revision, "canary")
    return [(stable, 100 - split.canary_weight), (canary, split.canary_weight)]


def _meta(md: Meta) -> dict[str, Any]:
    return {"name": names.service_name(md.name), "namespace": md.namespace,
            "labels": labels.common_labels(md.name), "ownerReferences": [md.owner_reference()]}


class ServiceProvider:
    """One Service over every ready primary pod: the split is the replica ratio."""

    name = "service"
    exact_weights = False
    kinds = ("Service",)

    def render(self, md: Meta, spec: ModelDeploymentSpec, split: Split,
               settings: RenderSettings) -> list[dict[str, Any]]:
        service = render_service(md, settings, "fallback" if split.fallback else "primary")
        if not split.fallback and split.canary_revision is None:
            # Only the stable revision: a previous stable kept up for a fast rollback (or
            # a canary scaled to zero) must not take user traffic. During a canary both
            # revisions match, and the replica ratio is the split.
            service["spec"]["selector"][labels.REVISION] = str(split.stable_revision)
        return [service]


# The Open Inference Protocol's gRPC service: what the gRPC routes match, so they claim
# only its paths (/inference.GRPCInferenceService/...), never the HTTP API's.
GRPC_SERVICE = "inference.GRPCInferenceService"


class GatewayApiProvider:
    """An HTTPRoute for the HTTP port and a GRPCRoute for the gRPC port, both with the
    same weighted backendRefs, attached to the user's Gateway."""

    name = "gateway-api"
    exact_weights = True
    kinds = ("Service", "HTTPRoute", "GRPCRoute")

    def render(self, md: Meta, spec: ModelDeploymentSpec, split: Split,
               settings: RenderSettings) -> list[dict[str, Any]]:
        ref = spec.traffic.gateway_ref
        parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                  "name": ref.name if ref else "gateway"}
        if ref and ref.namespace:
            parent["namespace"] = ref.namespace
        if ref and ref.section_name:
            parent["sectionName"] = ref.section_name
        backends = _backends(md, split)

        def route(kind: str, port: int, rule: dict[str, Any]) -> dict[str, Any]:
            rule["backendRefs"] = [
                {"group": "", "kind": "Service", "name": name, "port": port, "weight": weight}
                for name, weight in backends]
            route_spec: dict[str, Any] = {"parentRefs": [parent], "rules": [rule]}
            if spec.traffic.hostnames:
                route_spec["hostnames"] = list(spec.traffic.hostnames)
            return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
                    "metadata": _meta(md), "spec": route_spec}

        http = route("HTTPRoute", settings.port, {})
        # The match keeps the GRPCRoute to the inference service's own paths, which are
        # more specific than the HTTPRoute's "/", so both can share a listener and a
        # hostname: gRPC calls go to the gRPC port, everything else to the HTTP one.
        grpc = route("GRPCRoute", settings.grpc_port,
                     {"matches": [{"method": {"type": "Exact", "service": GRPC_SERVICE}}]})
        service = ServiceProvider().render(md, spec, split, settings)[0]
        return [service, http, grpc] if settings.grpc_port else [service, http]


class IstioProvider:
    """A VirtualService with weighted routes to the revision Services: gRPC (the gRPC
    port) to their gRPC port, everything else to their HTTP port."""

    name = "istio"
    exact_weights = True
    kinds = ("Service", "VirtualService")

    def render(self, md: Meta, spec: ModelDeploymentSpec, split: Split,
               settings: RenderSettings) -> list[dict[str, Any]]:
        domain = f"{md.namespace}.svc.{settings.cluster_domain}"
        hosts = [f"{names.service_name(md.name)}.{domain}", *(spec.traffic.hostnames or [])]

        def weighted(port: int) -> list[dict[str, Any]]:
            return [{"destination": {"host": f"{name}.{domain}", "port": {"number": port}},
                     "weight": weight} for name, weight in _backends(md, split)]

        http: list[dict[str, Any]] = []
        if settings.grpc_port:
            # First, and matched on the port the caller dialled: without it the catch-all
            # below would send gRPC calls to the HTTP port.
            http.append({"name": "grpc", "match": [{"port": settings.grpc_port}],
                         "route": weighted(settings.grpc_port)})
        http.append({"route": weighted(settings.port)})
        service = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": _meta(md), "spec": {"hosts": hosts, "http": http}}
        return [ServiceProvider().render(md, spec, split, settings)[0], service]


PROVIDERS: dict[str, Provider] = {
    p.name: p for p in (ServiceProvider(), GatewayApiProvider(), IstioProvider())
}


def provider_for(spec: ModelDeploymentSpec) -> Provider:
    return PROVIDERS[spec.traffic.provider]


# apiVersion of every kind a provider owns, to delete the ones a switch leaves behind.
API_VERSIONS = {
    "Service": "v1",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
    "GRPCRoute": "gateway.networking.k8s.io/v1",
    "VirtualService": "networking.istio.io/v1",
}


def stale_kinds(previous: str | None, current: str) -> list[str]:
    """Kinds the previous provider applied (named like the user-facing Service) that the
    current one does not: after spec.traffic.provider changes they would keep routing
    (an HTTPRoute attached to a Gateway sends requests to the revision Services)."""
    if previous is None or previous == current or previous not in PROVIDERS:
        return []
    return sorted(set(PROVIDERS[previous].kinds) - set(PROVIDERS[current].kinds))
