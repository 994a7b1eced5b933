"""Run the analysis step a canary is on: take due measurements, return the verdict."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from modelserve_operator.api import ModelDeploymentSpec
from modelserve_operator.api.modeldeployment import ModelDeploymentStatus
from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.decisions.analysis import (
    Verdict,
    judge,
    render_query,
    within,
)
from modelserve_operator.render.names import deployment_name

log = logging.getLogger("modelserve.operator")
_session: aiohttp.ClientSession | None = None


def _http() -> aiohttp.ClientSession:
    global _session
    if _session is None or _session.closed:
        _session = aiohttp.ClientSession()
    return _session


async def close() -> None:
    if _session is not None and not _session.closed:
        await _session.close()


async def run(ctx: Context, md: dict[str, Any], spec: ModelDeploymentSpec,
              status: ModelDeploymentStatus, target: int, now: float,
              ) -> tuple[Verdict | None, dict[str, Any] | None]:
    """(verdict, status.analysis) when the running canary is on an analysis step."""
    canary = spec.rollout.canary
    if spec.rollout.strategy != "Canary" or canary is None:
        return None, None
    if status.canary_revision != target:
        return None, None
    step = status.current_step or 0
    if step >= len(canary.steps) or canary.steps[step].analysis is None:
        return None, None
    wanted = canary.steps[step].analysis.metrics or []
    defined = {m.name: m for m in (spec.rollout.analysis.metrics if spec.rollout.analysis
                                   else [])}
    missing = [n for n in wanted if n not in defined]
    if missing:
        return Verdict(False, f"spec.rollout.canary.steps[{step}].analysis names "
                              f"{', '.join(missing)}, not defined in "
                              f"spec.rollout.analysis.metrics"), None
    metrics = [defined[n] for n in wanted]
    before = status.analysis
    taken: list[dict[str, Any]] = [m.wire() for m in before.measurements or []] if (
        before is not None and before.revision == target and before.step == step) else []
    verdict = judge(metrics, taken, now)
    meta = md["metadata"]
    values = {"namespace": meta["namespace"], "deployment": meta["name"],
              "revision": str(target), "version": status.canary_model_version or "",
              "canary": deployment_name(meta["name"], target, "canary"),
              "stable_revision": str(status.revision or ""),
              "stable": deployment_name(meta["name"], status.revision or 0, "stable")}
    for metric in (m for m in metrics if m.name in verdict.due):
        address = metric.prometheus.address or ctx.prometheus_url
        query = render_query(metric.prometheus.query, **values)
        try:
            value = await measure(_http(), address, query) if address else None
        except Exception as error:  # an unreachable Prometheus is a failed measurement
            log.warning("analysis %s of %s/%s: %s", metric.name, meta["namespace"],
                        meta["name"], error)
            value = None
        taken.append({"metric": metric.name, "value": value, "passed": within(metric, value),
                      "at": now})
    verdict = judge(metrics, taken, now)
    return verdict, {"revision": target, "step": step, "measurements": taken,
                     "message": verdict.message}


async def measure(session: aiohttp.ClientSession, address: str, query: str) -> float | None:
    """One instant query; the first sample's value, or None when there is no data."""
    url = address.rstrip("/") + "/api/v1/query"
    async with session.get(url, params={"query": query},
                           timeout=aiohttp.ClientTimeout(total=10)) as response:
        body = await response.json(content_type=None)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus query failed: {body.get('error', body)}")
    result = body["data"]["result"]
    if body["data"].get("resultType") == "scalar":
        return float(result[1])
    if not result:
        return None
    return float(result[0]["value"][1])
