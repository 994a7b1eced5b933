"""Reconcile one ModelDeployment: resolve its version, plan the rollout, apply, report.

Level-based: every call recomputes the whole desired state from the store, whatever
event woke it, so a missed or repeated event changes nothing. Writes happen only where
the live object differs from the desired one. Traffic always moves before capacity is
taken away: route to stable first, then scale or delete what no longer serves.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from pydantic import ValidationError

from modelserve_operator import API_VERSION, ROLLBACK_STEPS_ANNOTATION
from modelserve_operator.api import ModelDeploymentSpec, ModelVersionSpec
from modelserve_operator.controllers.cluster import metrics
from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.decisions import history
from modelserve_operator.controllers.decisions.conditions import Problem, pod_problem
from modelserve_operator.controllers.decisions.plan import Inputs, Plan, plan
from modelserve_operator.controllers.decisions.status import Observed, changed, compute
from modelserve_operator.controllers.reconcilers import analysis, autoscaling
from modelserve_operator.controllers.reconcilers.version_lookup import (
    pydantic_message,
    target_version,
    version_spec,
)
from modelserve_operator.render import (
    Meta,
    endpoint_url,
    render_deployment,
    render_revision_service,
    serving_selector,
)
from modelserve_operator.render.labels import MODEL_VERSION_ANNOTATION, POOL, REVISION
from modelserve_operator.render.names import deployment_name, service_name
from modelserve_operator.render.traffic import API_VERSIONS, Split, provider_for, stale_kinds

MD = "ModelDeployment"
log = logging.getLogger("modelserve.operator")


def gpu_resource(version: ModelVersionSpec) -> str | None:
    gpu = version.resources.gpu
    if gpu.mig:
        return f"nvidia.com/mig-{gpu.mig}"
    return "nvidia.com/gpu" if gpu.count else None


def _unix(timestamp: str | None) -> float | None:
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
        return sum(c.get("restartCount", 0) for p in self.pods.get(revision, [])
                   for c in p.get("status", {}).get("containerStatuses", []))

    def stale(self) -> bool:
        return any(_stale(d) for d in self.deployments.values())


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    """Bring one ModelDeployment's objects and status up to date; seconds to requeue."""
    md = ctx.store.get(MD, namespace, name)
    if md is None or md["metadata"].get("deletionTimestamp"):
        metrics.forget(namespace, name)
        return None  # children go with it through ownerReferences: nothing to do
    meta = Meta.of(md)
    generation = md["metadata"].get("generation", 1)
    status = md.get("status", {})
    past = status.get("history") or []
    seen = Observation(ctx, namespace, name)
    if seen.stale():
        # A Deployment controller has not caught up with our last change (even an
        # annotation bumps a Deployment's generation); its next status update brings
        # us back here with numbers worth reporting.
        return None

    try:
        spec = ModelDeploymentSpec.model_validate(md["spec"])
    except ValidationError as error:
        problem = Problem("InvalidSpec", pydantic_message(error, "spec"))
        await _report(ctx, md, _unchanged(ctx, md, seen, status.get("desiredReplicas") or 0,
                                          problem))
        return None

    mv_name, version, problem = await target_version(
        ctx, md, meta, spec, list(seen.deployments.values()), past)
    if problem is not None or version is None or mv_name is None:
        # Leave every running revision exactly as it is: bad input never stops serving.
        await _report(ctx, md, _unchanged(ctx, md, seen, spec.replicas, problem))
        return None

    owned_mvs = ctx.store.owned("ModelVersion", namespace, name)
    target = history.revision_for(mv_name, list(seen.deployments.values()), past, owned_mvs)
    now = ctx.now()
    total = _total_replicas(spec, seen, status)
    verdict, analysis_status = await analysis.run(ctx, md, spec, status, target, now)
    decided = plan(Inputs(
        spec=spec, status=status, target=target, target_version=mv_name, total=total,
        ready={r: seen.ready(r) for r in seen.deployments},
        restarts={r: seen.restarts(r) for r in seen.deployments},
        created={r: _unix(d["metadata"].get("creationTimestamp")) or now
                 for r, d in seen.deployments.items()},
        version_of={r: d["metadata"].get("annotations", {}).get(MODEL_VERSION_ANNOTATION, "")
                    for r, d in seen.deployments.items()},
        now=now, analysis=verdict.passed if verdict else None,
        analysis_message=verdict.message if verdict else "",
        steps_requested_for=_steps_requested_for(md)))

    # The autoscaler first: re-pointing it hands the stable's replicas over before the
    # Deployment is applied without them.
    await autoscaling.ensure_autoscaler(ctx, meta, spec,
                                        deployment_name(name, decided.stable, "stable"))
    await _apply(ctx, md, meta, spec, decided, mv_name, version, seen, now)
    scaling_problem, scaling_fields = autoscaling.autoscaler_status(ctx.store, namespace, name)
    seen = Observation(ctx, namespace, name)  # our applies updated the store
    stable_dep = seen.deployments.get(decided.stable)
    fallback_active = _fallback_active(spec, seen, decided)

    for reason, message, warning in decided.events:
        await ctx.event(md, reason, message, warning)
    # A revision stops serving when it stops taking traffic: a previous stable kept
    # scaled up for a fast rollback is superseded already.
    retired = [r for r in (int(e["revision"]) for e in past if not e.get("stoppedAt"))
               if r not in (decided.stable, decided.canary)]
    done = (decided.canary is None and stable_dep is not None
            and seen.ready(decided.stable) >= decided.stable_replicas)
    pods = seen.pods.get(decided.canary or decided.stable, [])
    started = _unix((seen.deployments.get(decided.canary or decided.stable) or {}).get(
        "metadata", {}).get("creationTimestamp"))
    exceeded = (not done and decided.canary is None and started is not None
                and now - started > spec.rollout.progress_deadline_seconds)
    observed = Observed(
        generation, status, ctx.utcnow(), decided.stable_replicas, revision=decided.stable,
        model_version=decided.stable_version, deployment=stable_dep,
        older_serving=sum(seen.ready(r) for r in seen.deployments if r != decided.stable),
        pod_problem=(None if done else pod_problem(pods, gpu_resource(version)))
        or scaling_problem,
        rollout_problem=decided.problem, progressing=decided.progressing,
        deadline_exceeded=exceeded,
        endpoint=endpoint_url(name, namespace, ctx.settings), selector=_selector(name),
        history=history.record(past, decided.stable, decided.stable_version, ctx.utcnow(),
                               done or decided.canary is not None, retired,
                               spec.revision_history_limit,
                               aborted=(decided.aborted, decided.canary_version or "")
                               if decided.aborted else None,
                               live=frozenset(r for r in (decided.canary, decided.previous)
                                              if r is not None)),
        extra={**_rollout_fields(spec, decided, analysis_status or _kept_analysis(
                   status, decided), fallback_active),
               **scaling_fields},
    )
    await _report(ctx, md, observed)
    if decided.previous_retire_at:
        return max(0.5, min(decided.requeue or 1e9, decided.previous_retire_at - now + 0.1))
    if decided.requeue:
        return decided.requeue
    if not done and not exceeded and started is not None:
        return max(1.0, started + spec.rollout.progress_deadline_seconds - now + 1)
    return None


def _steps_requested_for(md: dict[str, Any]) -> int | None:
    value = md["metadata"].get("annotations", {}).get(ROLLBACK_STEPS_ANNOTATION, "")
    return int(value) if value.isdigit() else None


def _unchanged(ctx: Context, md: dict[str, Any], seen: Observation, desired: int,
               problem: Problem | None) -> Observed:
    """What to report while bad input leaves every running revision as it is: the serving
    revision's pods (Ready says what serves) and the problem (Degraded says why)."""
    meta, status = md["metadata"], md.get("status", {})
    revision = status.get("revision")
    return Observed(
        meta.get("generation", 1), status, ctx.utcnow(), desired,
        older_serving=sum(seen.ready(r) for r in seen.deployments if r != revision),
        input_problem=problem, revision=revision, model_version=status.get("modelVersion"),
        history=status.get("history") or [], deployment=seen.deployments.get(revision or -1),
        endpoint=endpoint_url(meta["name"], meta["namespace"], ctx.settings),
        selector=_selector(meta["name"]))


def _kept_analysis(status: dict[str, Any], p: Plan) -> dict[str, Any] | None:
    """The last analysis stays in status while its canary runs or after it failed it."""
    analysis = status.get("analysis")
    if analysis and analysis.get("revision") in (p.canary, p.aborted):
        return analysis
    return None


def _total_replicas(spec: ModelDeploymentSpec, seen: Observation, status: dict) -> int:
    if spec.autoscaling is None:
        return spec.replicas
    stable = seen.deployments.get(status.get("revision") or -1)
    current = (stable or {}).get("spec", {}).get("replicas")
    return current or spec.autoscaling.min_replicas


def _fallback_active(spec: ModelDeploymentSpec, seen: Observation, p: Plan) -> bool:
    if spec.fallback is None or not seen.fallback_ready:
        return False
    return seen.ready(p.stable) == 0 and seen.ready(p.canary) == 0


def _rollout_fields(spec: ModelDeploymentSpec, p: Plan, analysis: dict[str, Any] | None,
                    fallback_active: bool) -> dict[str, Any]:
    provider = provider_for(spec)
    fields: dict[str, Any] = {
        "canaryRevision": p.canary, "canaryModelVersion": p.canary_version,
        "canaryWeight": p.weight if p.canary is not None else None,
        "currentStep": p.state.step if p.state else None,
        "stepStartedAt": p.state.step_started if p.state else None,
        "abortedRevision": p.aborted, "previousRevision": p.previous,
        "previousRetireAt": p.previous_retire_at, "analysis": analysis,
        "fallbackActive": fallback_active or None,
        "trafficProvider": provider.name,
        "trafficNote": None if provider.exact_weights or p.canary is None else (
            f"provider service: the {p.weight}% weight is approximated by the replica ratio "
            f"({p.canary_replicas} canary / {p.stable_replicas} stable pods)"),
    }
    if p.consumed_control:
        fields["control"] = None
    return fields


async def _apply(ctx: Context, md: dict[str, Any], meta: Meta, spec: ModelDeploymentSpec,
                 p: Plan, target_mv: str, target_version: ModelVersionSpec,
                 seen: Observation, now: float) -> None:
    namespace, name = meta.namespace, meta.name
    autoscaled = spec.autoscaling is not None
    if p.recreate:
        for revision, dep in seen.deployments.items():
            if revision != p.stable:
                await _retire(ctx, namespace, dep)

    async def ensure_revision(revision: int, version_name: str, role: str,
                              replicas: int | None) -> None:
        version = (target_version if version_name == target_mv
                   else await version_spec(ctx, namespace, version_name))
        if version is None:  # its ModelVersion is gone: leave the Deployment as it is
            return
        existed = revision in seen.deployments
        # Independent objects: apply them concurrently (one round trip, not two).
        await asyncio.gather(
            ctx.ensure("Deployment", render_deployment(
                meta, spec, version_name, version, revision, role, replicas, ctx.settings)),
            ctx.ensure("Service", render_revision_service(meta, revision, role,
                                                          ctx.settings)))
        # The first revision's story is told by the Ready (or Degraded) Event that
        # follows; an Event per object created would double the writes of a new model.
        if not existed and seen.deployments:
            await ctx.event(md, "RevisionCreated", f"created the Deployment of revision "
                            f"{revision} (ModelVersion {version_name}) as {role}")

    # The HPA owns the stable's replicas; during a canary the operator sizes the canary.
    stable_replicas = None if autoscaled else p.stable_replicas
    await ensure_revision(p.stable, p.stable_version, "stable", stable_replicas)
    if p.canary is not None and p.canary_version:
        await ensure_revision(p.canary, p.canary_version, "canary", p.canary_replicas)

    if spec.fallback is not None:
        fallback = await version_spec(ctx, namespace, spec.fallback.model_version)
        if fallback is not None:
            await ctx.ensure("Deployment", render_deployment(
                meta, spec, spec.fallback.model_version, fallback, 0, "fallback",
                spec.fallback.replicas, ctx.settings))
            await ctx.ensure("Service", render_revision_service(meta, 0, "fallback",
                                                                ctx.settings))
    else:
        fallback_name = deployment_name(name, 0, "fallback")
        if ctx.store.get("Deployment", namespace, fallback_name):
            await ctx.delete("apps/v1", "Deployment", namespace, fallback_name)
            await ctx.delete("v1", "Service", namespace, fallback_name)

    # Traffic moves before capacity is removed.
    refreshed = Observation(ctx, namespace, name)
    split = Split(p.stable, p.canary if p.canary_replicas else None, p.weight,
                  fallback=_fallback_active(spec, refreshed, p))
    provider = provider_for(spec)
    await asyncio.gather(*(ctx.ensure(obj["kind"], obj)
                           for obj in provider.render(meta, spec, split, ctx.settings)))
    previous_provider = md.get("status", {}).get("trafficProvider")
    for kind in stale_kinds(previous_provider, provider.name):
        await ctx.delete(API_VERSIONS[kind], kind, namespace, service_name(name))
        await ctx.event(md, "TrafficProviderChanged",
                        f"traffic.provider is {provider.name} now: deleted {kind} "
                        f"{service_name(name)} of provider {previous_provider}")

    stable_ready = refreshed.ready(p.stable) >= (p.stable_replicas if not autoscaled else 1)
    for revision, dep in refreshed.deployments.items():
        if revision in (p.stable, p.canary):
            continue
        keep_previous = revision == p.previous and (p.previous_retire_at or 0) > now
        if keep_previous:
            continue
        if stable_ready or p.recreate:  # never take away the only serving pods
            await _retire(ctx, namespace, dep)
            await ctx.event(md, "RevisionRetired",
                            f"revision {revision} scaled away; it can be rolled back to "
                            f"while its ModelVersion is retained")
    await _delete_orphan_services(ctx, namespace, name)
    await _collect_versions(ctx, md, spec, p)


def _selector(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in serving_selector(name).items())


async def _retire(ctx: Context, namespace: str, deployment: dict[str, Any]) -> None:
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


async def _collect_versions(ctx: Context, md: dict[str, Any], spec: ModelDeploymentSpec,
                            p: Plan) -> None:
    """Delete owned (template) ModelVersions beyond revisionHistoryLimit.

    Never one that serves or may serve again soon, and never one a user created: only
    versions carrying our deployment label and ownerReference are candidates.
    """
    meta = md["metadata"]
    owned = ctx.store.owned("ModelVersion", meta["namespace"], meta["name"])
    keep = {p.stable, p.canary, p.previous}
    newest = sorted((history.revision_of(mv) for mv in owned), reverse=True)
    keep.update(newest[: max(spec.revision_history_limit, 1)])
    for mv in owned:
        if history.revision_of(mv) not in keep and mv["metadata"].get("ownerReferences"):
            await ctx.delete(API_VERSION, "ModelVersion", meta["namespace"],
                             mv["metadata"]["name"])


async def _report(ctx: Context, md: dict[str, Any], observed: Observed) -> None:
    """Write status if it changed; post Events for transitions a user should see."""
    meta = md["metadata"]
    status = compute(observed)
    previous = observed.previous
    metrics.set_phase(meta["namespace"], meta["name"], status["phase"])
    if not changed(previous, status):
        return
    log.debug("%s/%s status changes: %s", meta["namespace"], meta["name"],
              {k: v for k, v in status.items() if previous.get(k) != v})
    await ctx.kube.patch_status(API_VERSION, MD, meta["namespace"], meta["name"], status)
    md["status"] = {k: v for k, v in {**previous, **status}.items() if v is not None}
    old_reason = _true_reason(previous, "Degraded")
    new_reason = _true_reason(status, "Degraded")
    if new_reason and new_reason != old_reason and new_reason not in _ROLLOUT_EVENTS:
        degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
        await ctx.event(md, new_reason, degraded["message"], warning=True)
    elif old_reason and not new_reason:
        await ctx.event(md, "Recovered", "the problem is gone: " + status["conditions"][0][
            "message"])
    if status["phase"] == "Ready" and previous.get("phase") != "Ready":
        await ctx.event(md, "Ready", status["conditions"][0]["message"])
    if status.get("fallbackActive") != previous.get("fallbackActive"):
        if status.get("fallbackActive"):
            await ctx.event(md, "FallbackActive", "no primary pod is ready: the fallback "
                            "version takes the traffic", warning=True)
        else:
            await ctx.event(md, "FallbackReleased", "primary pods are ready again: traffic "
                            "is back on the primary")


# Rollout problems post their own Event when the plan decides them.
_ROLLOUT_EVENTS = {"Aborted", "AnalysisFailed", "CanaryUnhealthy", "ProgressDeadlineExceeded"}


def _true_reason(status: dict[str, Any], type_: str) -> str | None:
    for condition in status.get("conditions") or ():
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition.get("reason")
    return None
