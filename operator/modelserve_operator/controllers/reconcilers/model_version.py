"""Reconcile one ModelVersion: check what the API server cannot, and say so in status."""

from __future__ import annotations

from modelserve_operator import API_VERSION
from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.decisions.status import changed
from modelserve_operator.controllers.decisions.version_status import compute_status, problems_of


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    mv = ctx.store.get("ModelVersion", namespace, name)
    if mv is None or mv["metadata"].get("deletionTimestamp"):
        return None
    previous = mv.get("status", {})
    status = compute_status(problems_of(mv["spec"]), previous,
                            mv["metadata"].get("generation", 1), ctx.utcnow())
    if changed(previous, status):
        await ctx.kube.patch_status(API_VERSION, "ModelVersion", namespace, name, status)
        mv["status"] = {**previous, **status}
    return None
