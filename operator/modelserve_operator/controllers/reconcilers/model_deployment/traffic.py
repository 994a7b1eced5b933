"""Traffic: the user-facing route (Service, HTTPRoute or VirtualService) with the plan's
weights; the previous provider's route goes when spec.traffic.provider changes."""

from __future__ import annotations

import asyncio

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
    await asyncio.gather(*(r.ctx.ensure(obj["kind"], obj)
                           for obj in provider.render(r.meta, r.spec, split, r.ctx.settings)))
    previous = r.stored.traffic_provider
    name = service_name(r.meta.name)
    for kind in stale_kinds(previous, provider.name):
        await r.ctx.delete(API_VERSIONS[kind], kind, r.meta.namespace, name)
        await r.event("TrafficProviderChanged", f"traffic.provider is {provider.name} now: "
                      f"deleted {kind} {name} of provider {previous}")
