"""Traffic: the user-facing route (Service, HTTPRoute and GRPCRoute, or VirtualService)
with the plan's weights; the previous provider's route goes when spec.traffic.provider
changes."""

from __future__ import annotations

import asyncio

from modelserve_operator.controllers.cluster.client import ApiError
from modelserve_operator.controllers.reconcilers.model_deployment.fallback import (
    fallback_active,
)
from modelserve_operator.controllers.reconcilers.model_deployment.round import Round
from modelserve_operator.render.names import service_name
from modelserve_operator.render.traffic import API_VERSIONS, Split, provider_for, stale_kinds


async def route(r: Round) -> None:
    p, seen = r.plan, r.refresh()
    split = Split(p.stable, p.canary if p.canary_replicas else None, p.weight,
                  fallback=fallback_active(r.spec, seen, p))
    provider = provider_for(r.spec)
    await asyncio.gather(*(_ensure(r, obj)
                           for obj in provider.render(r.meta, r.spec, split, r.ctx.settings)
                           if obj["kind"] not in r.ctx.unserved_kinds))
    previous = r.stored.traffic_provider
    name = service_name(r.meta.name)
    for kind in stale_kinds(previous, provider.name):
        await r.ctx.delete(API_VERSIONS[kind], kind, r.meta.namespace, name)
        await r.event("TrafficProviderChanged", f"traffic.provider is {provider.name} now: "
                      f"deleted {kind} {name} of provider {previous}")


# Route kinds a cluster may lack while the rest of its provider works: Gateway API
# before v1.1 (or an implementation without gRPC support) has no GRPCRoute. HTTP must
# keep flowing there; gRPC through the gateway then waits for the CRD.
OPTIONAL_KINDS = frozenset({"GRPCRoute"})


async def _ensure(r: Round, obj: dict) -> None:
    kind = obj["kind"]
    try:
        await r.ctx.ensure(kind, obj)
    except ApiError as exc:
        if exc.status != 404 or kind not in OPTIONAL_KINDS:
            raise
        # Remembered for the life of this operator process (no retry on every reconcile);
        # a restart after installing the CRD picks the kind up.
        r.ctx.unserved_kinds.add(kind)
        await r.event("RouteKindNotServed", f"the cluster does not serve {kind} "
                      f"({obj['apiVersion']}): gRPC is not routed through the gateway; "
                      "install the Gateway API CRDs v1.1 or later and restart the operator",
                      warning=True)
