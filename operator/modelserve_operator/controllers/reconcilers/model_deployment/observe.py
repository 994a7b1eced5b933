"""What one ModelDeployment has running: its primary Deployments and pods, by revision."""

from __future__ import annotations

import datetime
from typing import Any

from modelserve_operator.api import ModelVersionSpec
from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.decisions import history
from modelserve_operator.render.labels import POOL
from modelserve_operator.render.names import deployment_name


def gpu_resource(version: ModelVersionSpec) -> str | None:
    gpu = version.resources.gpu
    if gpu.mig:
        return f"nvidia.com/mig-{gpu.mig}"
    return "nvidia.com/gpu" if gpu.count else None


def unix(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    return datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC).timestamp()


def _stale(deployment: dict[str, Any]) -> bool:
    observed = deployment.get("status", {}).get("observedGeneration", 0)
    return observed < deployment["metadata"].get("generation", 0)


class Observation:
    """The primary Deployments and pods of one ModelDeployment, by revision."""

    def __init__(self, ctx: Context, namespace: str, name: str):
        self.deployments = {
            history.revision_of(d): d for d in ctx.store.owned("Deployment", namespace, name)
            if d["metadata"].get("labels", {}).get(POOL) == "primary"}
        self.pods: dict[int, list[dict[str, Any]]] = {}
        for pod in ctx.store.owned("Pod", namespace, name):
            if pod["metadata"].get("labels", {}).get(POOL) == "primary":
                self.pods.setdefault(history.revision_of(pod), []).append(pod)
        fallback = ctx.store.get("Deployment", namespace, deployment_name(name, 0, "fallback"))
        self.fallback_ready = (fallback or {}).get("status", {}).get("readyReplicas", 0)

    def ready(self, revision: int | None) -> int:
        dep = self.deployments.get(revision or -1)
        return (dep or {}).get("status", {}).get("readyReplicas", 0) or 0

    def restarts(self, revision: int) -> int:
        """Container restarts, the model fetch's included: a fetch that failed (after its
        own retries) is as sure a sign of a broken version as a crashing runtime."""
        return sum(c.get("restartCount", 0) for p in self.pods.get(revision, [])
                   for kind in ("containerStatuses", "initContainerStatuses")
                   for c in p.get("status", {}).get(kind, []))

    def created(self, revision: int | None) -> float | None:
        dep = self.deployments.get(revision or -1)
        return unix((dep or {}).get("metadata", {}).get("creationTimestamp"))

    def stale(self) -> bool:
        return any(_stale(d) for d in self.deployments.values())
