"""History garbage collection: owned (template) ModelVersions beyond revisionHistoryLimit."""

from __future__ import annotations

from modelserve_operator import API_VERSION
from modelserve_operator.controllers.decisions import history
from modelserve_operator.controllers.reconcilers.model_deployment.round import Round


async def collect_versions(r: Round) -> None:
    """Never one that serves or may serve again soon, and never one a user created: only
    versions carrying our deployment label and ownerReference are candidates."""
    p, namespace = r.plan, r.meta.namespace
    owned = r.ctx.store.owned("ModelVersion", namespace, r.meta.name)
    keep = {p.stable, p.canary, p.previous}
    newest = sorted((history.revision_of(mv) for mv in owned), reverse=True)
    keep.update(newest[: max(r.spec.revision_history_limit, 1)])
    for mv in owned:
        if history.revision_of(mv) not in keep and mv["metadata"].get("ownerReferences"):
            await r.ctx.delete(API_VERSION, "ModelVersion", namespace, mv["metadata"]["name"])
