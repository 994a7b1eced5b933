"""Report: status from what this round observed (decisions.status), written only when it
changed, and the Events for transitions a user should see."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from modelserve_operator import API_VERSION
from modelserve_operator.api import ModelDeploymentSpec, ModelDeploymentStatus
from modelserve_operator.controllers.cluster import metrics
from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.decisions import history, pod_progress
from modelserve_operator.controllers.decisions.conditions import (
    Problem,
    fetching_pods,
    pod_problem,
)
from modelserve_operator.controllers.decisions.plan import Plan
from modelserve_operator.controllers.decisions.status import Observed, changed, compute
from modelserve_operator.controllers.reconcilers.model_deployment.fallback import (
    fallback_active,
)
from modelserve_operator.controllers.reconcilers.model_deployment.observe import (
    Observation,
    gpu_resource,
)
from modelserve_operator.controllers.reconcilers.model_deployment.round import Round
from modelserve_operator.render import endpoint_url, serving_selector
from modelserve_operator.render.traffic import provider_for

log = logging.getLogger("modelserve.operator")
# Rollout problems post their own Event when the plan decides them.
_ROLLOUT_EVENTS = {"Aborted", "AnalysisFailed", "CanaryUnhealthy", "ProgressDeadlineExceeded"}


@dataclass(frozen=True)
class Progress:
    """Whether the rollout this round drove is done, and whether it ran out of time."""

    done: bool
    exceeded: bool
    started: float | None


def progress(r: Round) -> Progress:
    p, seen = r.plan, r.seen
    stable = seen.deployments.get(p.stable)
    done = (p.canary is None and stable is not None
            and seen.ready(p.stable) >= p.stable_replicas)
    started = seen.created(p.canary or p.stable)
    exceeded = (not done and p.canary is None and started is not None
                and r.now - started > r.spec.rollout.progress_deadline_seconds)
    return Progress(done, exceeded, started)


def _rolling_out(r: Round) -> list[dict[str, Any]]:
    """The pods of the revision being rolled out (the canary, else the stable one)."""
    return r.seen.pods.get(r.plan.canary or r.plan.stable, [])


def progress_targets(r: Round, done: Progress) -> list[pod_progress.Target]:
    """The not-Ready pods of the revision being rolled out that have a container running
    to ask for progress; none once the rollout is done (nothing is read in steady state)."""
    if done.done:
        return []
    return pod_progress.targets(_rolling_out(r), r.ctx.settings.port)


async def model_progress(r: Round, targets: list[pod_progress.Target]
                         ) -> dict[str, Any] | None:
    """status.modelProgress: what `targets` (progress_targets) report, if any answers."""
    if not targets:
        return None
    waiting = pod_progress.waiting(_rolling_out(r))
    reports = await r.ctx.read_progress(targets)
    previous = r.md.get("status", {}).get("modelProgress")
    return pod_progress.summarise(reports, len(waiting), previous, r.now, r.ctx.utcnow())


def observed_after(r: Round, done: Progress, analysis: dict[str, Any] | None,
                   scaling: tuple[Problem | None, dict[str, Any]],
                   progress_now: dict[str, Any] | None = None) -> Observed:
    p, seen, stored = r.plan, r.seen, r.stored
    past = stored.history or []
    # A revision stops serving when it stops taking traffic: a previous stable kept
    # scaled up for a fast rollback is superseded already.
    retired = [e.revision for e in past if not e.stopped_at
               and e.revision not in (p.stable, p.canary)]
    pods = seen.pods.get(p.canary or p.stable, [])
    scaling_problem, scaling_fields = scaling
    return Observed(
        r.meta_generation(), r.md.get("status", {}), r.ctx.utcnow(), p.stable_replicas,
        revision=p.stable, model_version=p.stable_version,
        deployment=seen.deployments.get(p.stable),
        older_serving=sum(seen.ready(v) for v in seen.deployments if v != p.stable),
        pod_problem=(None if done.done else pod_problem(pods, gpu_resource(r.target_spec)))
        or scaling_problem,
        rollout_problem=p.problem, progressing=p.progressing,
        fetching_pods=fetching_pods(pods),
        model_progress=progress_now,
        deadline_exceeded=done.exceeded,
        endpoint=endpoint_url(r.meta.name, r.meta.namespace, r.ctx.settings),
        selector=selector(r.meta.name),
        history=history.record(past, p.stable, p.stable_version, r.ctx.utcnow(),
                               done.done or p.canary is not None, retired,
                               r.spec.revision_history_limit,
                               aborted=(p.aborted, p.canary_version or "")
                               if p.aborted else None,
                               live=frozenset(v for v in (p.canary, p.previous)
                                              if v is not None)),
        extra={**rollout_fields(r.spec, p, analysis or _kept_analysis(stored, p),
                                fallback_active(r.spec, seen, p)),
               **scaling_fields},
    )


def unchanged(ctx: Context, md: dict[str, Any], stored: ModelDeploymentStatus,
              seen: Observation, desired: int, problem: Problem | None) -> Observed:
    """What to report while bad input leaves every running revision as it is: the serving
    revision's pods (Ready says what serves) and the problem (Degraded says why)."""
    meta = md["metadata"]
    revision = stored.revision
    return Observed(
        meta.get("generation", 1), md.get("status", {}), ctx.utcnow(), desired,
        older_serving=sum(seen.ready(r) for r in seen.deployments if r != revision),
        input_problem=problem, revision=revision, model_version=stored.model_version,
        history=stored.history or [], deployment=seen.deployments.get(revision or -1),
        endpoint=endpoint_url(meta["name"], meta["namespace"], ctx.settings),
        selector=selector(meta["name"]))


def selector(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in serving_selector(name).items())


def _kept_analysis(stored: ModelDeploymentStatus, p: Plan) -> dict[str, Any] | None:
    """The last analysis stays in status while its canary runs or after it failed it."""
    analysis = stored.analysis
    if analysis and analysis.revision in (p.canary, p.aborted):
        return analysis.wire()
    return None


def rollout_fields(spec: ModelDeploymentSpec, p: Plan, analysis: dict[str, Any] | None,
                   fallback_on: bool) -> dict[str, Any]:
    provider = provider_for(spec)
    fields: dict[str, Any] = {
        "canaryRevision": p.canary, "canaryModelVersion": p.canary_version,
        "canaryWeight": p.weight if p.canary is not None else None,
        "currentStep": p.state.step if p.state else None,
        "stepStartedAt": p.state.step_started if p.state else None,
        "abortedRevision": p.aborted, "previousRevision": p.previous,
        "previousRetireAt": p.previous_retire_at, "analysis": analysis,
        "fallbackActive": fallback_on or None,
        "trafficProvider": provider.name,
        "trafficNote": None if provider.exact_weights or p.canary is None else (
            f"provider service: the {p.weight}% weight is approximated by the replica ratio "
            f"({p.canary_replicas} canary / {p.stable_replicas} stable pods)"),
    }
    if p.consumed_control:
        fields["control"] = None
    return fields


async def report(ctx: Context, md: dict[str, Any], observed: Observed) -> None:
    """Write status if it changed; post Events for transitions a user should see."""
    meta = md["metadata"]
    status = compute(observed)
    previous = observed.previous
    metrics.set_phase(meta["namespace"], meta["name"], status["phase"])
    if not changed(previous, status):
        return
    log.debug("%s/%s status changes: %s", meta["namespace"], meta["name"],
              {k: v for k, v in status.items() if previous.get(k) != v})
    await ctx.kube.patch_status(API_VERSION, "ModelDeployment", meta["namespace"],
                                meta["name"], status)
    md["status"] = {k: v for k, v in {**previous, **status}.items() if v is not None}
    before, after = ModelDeploymentStatus.read(previous), ModelDeploymentStatus.read(md["status"])
    old_reason, new_reason = _true_reason(before, "Degraded"), _true_reason(after, "Degraded")
    ready = after.condition("Ready")
    ready_message = (ready.message if ready else None) or ""
    if new_reason and new_reason != old_reason and new_reason not in _ROLLOUT_EVENTS:
        degraded = after.condition("Degraded")
        await ctx.event(md, new_reason, (degraded.message if degraded else None) or "",
                        warning=True)
    elif old_reason and not new_reason:
        await ctx.event(md, "Recovered", "the problem is gone: " + ready_message)
    if after.phase == "Ready" and before.phase != "Ready":
        await ctx.event(md, "Ready", ready_message)
    if after.fallback_active != before.fallback_active:
        if after.fallback_active:
            await ctx.event(md, "FallbackActive", "no primary pod is ready: the fallback "
                            "version takes the traffic", warning=True)
        else:
            await ctx.event(md, "FallbackReleased", "primary pods are ready again: traffic "
                            "is back on the primary")


def _true_reason(status: ModelDeploymentStatus, type_: str) -> str | None:
    condition = status.condition(type_)
    return condition.reason if condition and condition.status == "True" else None
