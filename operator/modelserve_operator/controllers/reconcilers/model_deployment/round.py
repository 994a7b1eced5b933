"""One reconcile of one ModelDeployment: what every step reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelserve_operator.api import ModelDeploymentSpec, ModelDeploymentStatus, ModelVersionSpec
from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.decisions.plan import Plan
from modelserve_operator.controllers.reconcilers.model_deployment.observe import Observation
from modelserve_operator.render import Meta


@dataclass
class Round:
    """The inputs and the decided plan of this reconcile; steps read it, apply, and
    refresh `seen` when they need what their own writes changed."""

    ctx: Context
    md: dict[str, Any]
    meta: Meta
    spec: ModelDeploymentSpec
    stored: ModelDeploymentStatus  # the status as stored when the round began
    seen: Observation
    now: float
    target_version: str
    target_spec: ModelVersionSpec
    plan: Plan

    def meta_generation(self) -> int:
        return self.md["metadata"].get("generation", 1)

    def refresh(self) -> Observation:
        self.seen = Observation(self.ctx, self.meta.namespace, self.meta.name)
        return self.seen

    async def event(self, reason: str, message: str, warning: bool = False) -> None:
        await self.ctx.event(self.md, reason, message, warning)
