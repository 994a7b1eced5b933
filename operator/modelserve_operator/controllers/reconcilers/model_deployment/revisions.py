"""Revisions: the stable and canary Deployments (with their Services) and retiring the
ones that no longer serve, never before the stable can take their traffic."""

from __future__ import annotations

import asyncio
from typing import Any

from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.reconcilers.model_deployment.round import Round
from modelserve_operator.controllers.reconcilers.version_lookup import version_spec
from modelserve_operator.render import render_deployment, render_revision_service
from modelserve_operator.render.labels import REVISION


async def stop_before_start(r: Round) -> None:
    """Strategy Recreate: every other revision goes before the new one starts."""
    if r.plan.recreate:
        for revision, dep in r.seen.deployments.items():
            if revision != r.plan.stable:
                await retire(r.ctx, r.meta.namespace, dep)


async def ensure_revisions(r: Round) -> None:
    p = r.plan
    # The HPA owns the stable's replicas; during a canary the operator sizes the canary.
    stable_replicas = None if r.spec.autoscaling is not None else p.stable_replicas
    await _ensure(r, p.stable, p.stable_version, "stable", stable_replicas)
    if p.canary is not None and p.canary_version:
        await _ensure(r, p.canary, p.canary_version, "canary", p.canary_replicas)


async def _ensure(r: Round, revision: int, version_name: str, role: str,
                  replicas: int | None) -> None:
    version = (r.target_spec if version_name == r.target_version
               else await version_spec(r.ctx, r.meta.namespace, version_name))
    if version is None:  # its ModelVersion is gone: leave the Deployment as it is
        return
    existed = revision in r.seen.deployments
    # Independent objects: apply them concurrently (one round trip, not two).
    await asyncio.gather(
        r.ctx.ensure("Deployment", render_deployment(
            r.meta, r.spec, version_name, version, revision, role, replicas, r.ctx.settings)),
        r.ctx.ensure("Service", render_revision_service(r.meta, revision, role,
                                                        r.ctx.settings)))
    # The first revision's story is told by the Ready (or Degraded) Event that follows;
    # an Event per object created would double the writes of a new model.
    if not existed and r.seen.deployments:
        await r.event("RevisionCreated", f"created the Deployment of revision {revision} "
                                         f"(ModelVersion {version_name}) as {role}")


async def retire_superseded(r: Round) -> None:
    """Scale away revisions that are neither stable nor canary (the previous stable once
    its scale-down delay passed), but only once the stable is ready to serve."""
    p, seen = r.plan, r.refresh()
    wanted = p.stable_replicas if r.spec.autoscaling is None else 1
    stable_ready = seen.ready(p.stable) >= wanted
    for revision, dep in seen.deployments.items():
        if revision in (p.stable, p.canary):
            continue
        if revision == p.previous and (p.previous_retire_at or 0) > r.now:
            continue  # kept for an instant rollback
        if stable_ready or p.recreate:  # never take away the only serving pods
            await retire(r.ctx, r.meta.namespace, dep)
            await r.event("RevisionRetired", f"revision {revision} scaled away; it can be "
                          f"rolled back to while its ModelVersion is retained")
    await _delete_orphan_services(r.ctx, r.meta.namespace, r.meta.name)


async def retire(ctx: Context, namespace: str, deployment: dict[str, Any]) -> None:
    dep_name = deployment["metadata"]["name"]
    await ctx.delete("apps/v1", "Deployment", namespace, dep_name)
    if ctx.store.get("Service", namespace, dep_name):
        await ctx.delete("v1", "Service", namespace, dep_name)


async def _delete_orphan_services(ctx: Context, namespace: str, md_name: str) -> None:
    for svc in ctx.store.owned("Service", namespace, md_name):
        svc_name = svc["metadata"]["name"]
        if REVISION in svc["metadata"].get("labels", {}) and not ctx.store.get(
                "Deployment", namespace, svc_name):
            await ctx.delete("v1", "Service", namespace, svc_name)
