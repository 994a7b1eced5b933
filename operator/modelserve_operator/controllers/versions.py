"""Reconcile one ModelVersion: check what the API server cannot, and say so in status."""

from __future__ import annotations

from pydantic import ValidationError

from modelserve_operator import API_VERSION
from modelserve_operator.api import ModelVersionSpec
from modelserve_operator.controllers.conditions import set_condition
from modelserve_operator.controllers.context import Context, utcnow
from modelserve_operator.controllers.status import changed
from modelserve_operator.render import validate


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    mv = ctx.store.get("ModelVersion", namespace, name)
    if mv is None or mv["metadata"].get("deletionTimestamp"):
        return None
    try:
        problems = validate(ModelVersionSpec.model_validate(mv["spec"]))
    except ValidationError as error:
        problems = [f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
    previous = mv.get("status", {})
    generation = mv["metadata"].get("generation", 1)
    condition = set_condition(
        previous.get("conditions"), "Ready", not problems,
        "Invalid" if problems else "Valid",
        "; ".join(problems) if problems else "the version can be served",
        generation, utcnow())
    status = {"observedGeneration": generation, "phase": "Invalid" if problems else "Valid",
              "conditions": [condition]}
    if changed(previous, status):
        await ctx.kube.patch_status(API_VERSION, "ModelVersion", namespace, name, status)
        mv["status"] = {**previous, **status}
    return None
