"""The fallback version: a small Deployment that takes the traffic while no primary pod
is ready (spec.fallback); removed when the spec drops it."""

from __future__ import annotations

from modelserve_operator.api import ModelDeploymentSpec
from modelserve_operator.controllers.decisions.plan import Plan
from modelserve_operator.controllers.reconcilers.model_deployment.observe import Observation
from modelserve_operator.controllers.reconcilers.model_deployment.round import Round
from modelserve_operator.controllers.reconcilers.version_lookup import version_spec
from modelserve_operator.render import render_deployment, render_revision_service
from modelserve_operator.render.names import deployment_name


async def ensure_fallback(r: Round) -> None:
    namespace, spec = r.meta.namespace, r.spec
    if spec.fallback is not None:
        fallback = await version_spec(r.ctx, namespace, spec.fallback.model_version)
        if fallback is not None:
            await r.ctx.ensure("Deployment", render_deployment(
                r.meta, spec, spec.fallback.model_version, fallback, 0, "fallback",
                spec.fallback.replicas, r.ctx.settings))
            await r.ctx.ensure("Service", render_revision_service(r.meta, 0, "fallback",
                                                                  r.ctx.settings))
        return
    name = deployment_name(r.meta.name, 0, "fallback")
    if r.ctx.store.get("Deployment", namespace, name):
        await r.ctx.delete("apps/v1", "Deployment", namespace, name)
        await r.ctx.delete("v1", "Service", namespace, name)


def fallback_active(spec: ModelDeploymentSpec, seen: Observation, p: Plan) -> bool:
    """The fallback serves when it is ready and neither stable nor canary has a pod."""
    if spec.fallback is None or not seen.fallback_ready:
        return False
    return seen.ready(p.stable) == 0 and seen.ready(p.canary) == 0
