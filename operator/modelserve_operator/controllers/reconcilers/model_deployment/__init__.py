"""Reconcile one ModelDeployment: resolve its version, plan the rollout, run the steps.

Level-based: every call recomputes the whole desired state from the store, whatever
event woke it, so a missed or repeated event changes nothing. Writes happen only where
the live object differs from the desired one. The steps, in order, one module each
(Argo Rollouts' canary reconciler is a chain of the same shape):

    autoscaling (reconcilers/autoscaling)  the HPA first: it takes the stable's replicas over
    revisions.ensure_revisions             stable and canary Deployments and Services
    fallback.ensure_fallback               the fallback version, or its removal
    traffic.route                          weights on the route; traffic moves before
    revisions.retire_superseded            ... capacity is taken away
    version_gc.collect_versions            owned ModelVersions beyond the history limit
    report.report                          status (conditions, history) and Events
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from modelserve_operator import ROLLBACK_STEPS_ANNOTATION
from modelserve_operator.api import ModelDeploymentSpec, ModelDeploymentStatus
from modelserve_operator.controllers.cluster import metrics
from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.decisions import history
from modelserve_operator.controllers.decisions.conditions import Problem
from modelserve_operator.controllers.decisions.plan import Inputs, plan
from modelserve_operator.controllers.decisions.pod_progress import POLL_SECONDS
from modelserve_operator.controllers.decisions.status import typed
from modelserve_operator.controllers.reconcilers import analysis, autoscaling
from modelserve_operator.controllers.reconcilers.model_deployment import (
    fallback,
    report,
    revisions,
    traffic,
    version_gc,
)
from modelserve_operator.controllers.reconcilers.model_deployment.observe import Observation
from modelserve_operator.controllers.reconcilers.model_deployment.round import Round
from modelserve_operator.controllers.reconcilers.version_lookup import (
    pydantic_message,
    target_version,
)
from modelserve_operator.render import Meta
from modelserve_operator.render.labels import MODEL_VERSION_ANNOTATION
from modelserve_operator.render.names import deployment_name


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    """Bring one ModelDeployment's objects and status up to date; seconds to requeue."""
    md = ctx.store.get("ModelDeployment", namespace, name)
    if md is None or md["metadata"].get("deletionTimestamp"):
        metrics.forget(namespace, name)
        return None  # children go with it through ownerReferences: nothing to do
    meta = Meta.of(md)
    stored = typed(md.get("status"))
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
        await report.report(ctx, md, report.unchanged(
            ctx, md, stored, seen, stored.desired_replicas or 0, problem))
        return None

    past = stored.history or []
    mv_name, version, problem = await target_version(
        ctx, md, meta, spec, list(seen.deployments.values()), past)
    if problem is not None or version is None or mv_name is None:
        # Leave every running revision exactly as it is: bad input never stops serving.
        await report.report(ctx, md, report.unchanged(ctx, md, stored, seen, spec.replicas,
                                                      problem))
        return None

    owned_mvs = ctx.store.owned("ModelVersion", namespace, name)
    target = history.revision_for(mv_name, list(seen.deployments.values()), past, owned_mvs)
    now = ctx.now()
    verdict, analysis_status = await analysis.run(ctx, md, spec, stored, target, now)
    decided = plan(Inputs(
        spec=spec, status=stored, target=target, target_version=mv_name,
        total=_total_replicas(spec, seen, stored),
        ready={r: seen.ready(r) for r in seen.deployments},
        restarts={r: seen.restarts(r) for r in seen.deployments},
        created={r: seen.created(r) or now for r in seen.deployments},
        version_of={r: d["metadata"].get("annotations", {}).get(MODEL_VERSION_ANNOTATION, "")
                    for r, d in seen.deployments.items()},
        now=now, analysis=verdict.passed if verdict else None,
        analysis_message=verdict.message if verdict else "",
        steps_requested_for=_steps_requested_for(md)))
    r = Round(ctx, md, meta, spec, stored, seen, now, mv_name, version, decided)

    await autoscaling.ensure_autoscaler(ctx, meta, spec,
                                        deployment_name(name, decided.stable, "stable"))
    await revisions.stop_before_start(r)
    await revisions.ensure_revisions(r)
    await fallback.ensure_fallback(r)
    await traffic.route(r)
    await revisions.retire_superseded(r)
    await version_gc.collect_versions(r)

    scaling = autoscaling.autoscaler_status(ctx.store, namespace, name)
    r.refresh()  # our applies updated the store
    for reason, message, warning in decided.events:
        await r.event(reason, message, warning)
    done = report.progress(r)
    asking = report.progress_targets(r, done)
    model_progress = await report.model_progress(r, asking)
    await report.report(ctx, md, report.observed_after(r, done, analysis_status, scaling,
                                                       model_progress))
    due = _requeue(r, done)
    if asking:
        # Bytes moving make no watch event: come back to read them while a pod is on its
        # way, answering or not yet (a fetch that has not opened its progress port at the
        # first ask would otherwise never be asked again: seen in CI under load). A pod
        # that goes Ready, crashes or goes away changes its status: an event.
        due = min(due or POLL_SECONDS, POLL_SECONDS)
    return due


def _requeue(r: Round, done: report.Progress) -> float | None:
    """Seconds until something is due: a retirement, a pause's end, the deadline."""
    p = r.plan
    if p.previous_retire_at:
        return max(0.5, min(p.requeue or 1e9, p.previous_retire_at - r.now + 0.1))
    if p.requeue:
        return p.requeue
    if not done.done and not done.exceeded and done.started is not None:
        return max(1.0, done.started + r.spec.rollout.progress_deadline_seconds - r.now + 1)
    return None


def _steps_requested_for(md: dict[str, Any]) -> int | None:
    value = md["metadata"].get("annotations", {}).get(ROLLBACK_STEPS_ANNOTATION, "")
    return int(value) if value.isdigit() else None


def _total_replicas(spec: ModelDeploymentSpec, seen: Observation,
                    stored: ModelDeploymentStatus) -> int:
    if spec.autoscaling is None:
        return spec.replicas
    stable = seen.deployments.get(stored.revision or -1)
    current = (stable or {}).get("spec", {}).get("replicas")
    return current or spec.autoscaling.min_replicas
