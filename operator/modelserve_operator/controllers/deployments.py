"""Reconcile one ModelDeployment: resolve its version, apply its objects, report status.

Level-based: every call recomputes the whole desired state from the store, whatever
event woke it, so a missed or repeated event changes nothing. Writes happen only where
the live object differs from the desired one.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from pydantic import ValidationError

from modelserve_operator import API_VERSION
from modelserve_operator.api import ModelDeploymentSpec, ModelVersionSpec
from modelserve_operator.controllers import history, metrics
from modelserve_operator.controllers.conditions import Problem, pod_problem
from modelserve_operator.controllers.context import TEMPLATE_HASH, Context, content_hash, utcnow
from modelserve_operator.controllers.status import Observed, compute, rolled_out
from modelserve_operator.render import (
    Meta,
    endpoint_url,
    render_deployment,
    render_revision_service,
    render_service,
    serving_selector,
    validate,
)
from modelserve_operator.render.labels import POOL, REVISION, common_labels
from modelserve_operator.render.names import deployment_name, dns_label

MD = "ModelDeployment"
log = logging.getLogger("modelserve.operator")


def _pydantic_message(error: ValidationError, prefix: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{prefix}.{where}: {first['msg']}"


def gpu_resource(version: ModelVersionSpec) -> str | None:
    gpu = version.resources.gpu
    if gpu.mig:
        return f"nvidia.com/mig-{gpu.mig}"
    return "nvidia.com/gpu" if gpu.count else None


def _age_seconds(obj: dict[str, Any]) -> float:
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return 0.0
    then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC)
    return time.time() - then.timestamp()


async def _snapshot_template(ctx: Context, md: dict[str, Any], meta: Meta,
                             template: ModelVersionSpec, revision_hint: int) -> str:
    """The owned ModelVersion holding `spec.template`, created on first sight."""
    digest = content_hash(template.wire())
    for mv in ctx.store.owned("ModelVersion", meta.namespace, meta.name):
        if mv["metadata"].get("annotations", {}).get(TEMPLATE_HASH) == digest:
            return mv["metadata"]["name"]
    name = dns_label(meta.name, f"-v{revision_hint}")
    await ctx.ensure("ModelVersion", {
        "apiVersion": API_VERSION, "kind": "ModelVersion",
        "metadata": {
            "name": name, "namespace": meta.namespace,
            "labels": {**common_labels(meta.name), REVISION: str(revision_hint)},
            "annotations": {TEMPLATE_HASH: digest},
            "ownerReferences": [meta.owner_reference()],
        },
        "spec": template.wire(),
    })
    await ctx.event(md, "RevisionSnapshotted",
                    f"spec.template saved as ModelVersion {name} (revision {revision_hint})")
    return name


async def _resolve(ctx: Context, md: dict[str, Any], meta: Meta, spec: ModelDeploymentSpec,
                   deployments: list[dict[str, Any]], past: list[dict[str, Any]],
                   ) -> tuple[str | None, ModelVersionSpec | None, Problem | None]:
    """(ModelVersion name, its spec, problem) for what the spec says should serve."""
    owned_mvs = ctx.store.owned("ModelVersion", meta.namespace, meta.name)
    if spec.template is not None:
        hint = history.next_revision(deployments, past, owned_mvs)
        name = await _snapshot_template(ctx, md, meta, spec.template, hint)
        return name, spec.template, None
    name = spec.model_version or ""
    mv = ctx.store.get("ModelVersion", meta.namespace, name)
    if mv is None:  # maybe just not listed yet (operator start): confirm with one read
        found = await ctx.kube.get(API_VERSION, "ModelVersion", meta.namespace, name)
        mv = ctx.store.upsert("ModelVersion", found) if found else None
    if mv is None:
        return name, None, Problem(
            "ModelVersionNotFound",
            f"spec.modelVersion: ModelVersion {name!r} does not exist in namespace "
            f"{meta.namespace}; create it or fix the name. The current revision keeps "
            f"serving.")
    try:
        return name, ModelVersionSpec.model_validate(mv["spec"]), None
    except ValidationError as error:
        return name, None, Problem("InvalidModelVersion",
                                   _pydantic_message(error, f"ModelVersion {name} spec"))


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    """Bring one ModelDeployment's objects and status up to date; seconds to requeue."""
    md = ctx.store.get(MD, namespace, name)
    if md is None or md["metadata"].get("deletionTimestamp"):
        metrics.forget(namespace, name)
        return None  # children go with it through ownerReferences: nothing to do
    meta = Meta.of(md)
    generation = md["metadata"].get("generation", 1)
    previous = md.get("status", {})
    past = previous.get("history") or []
    deployments = [d for d in ctx.store.owned("Deployment", namespace, name)
                   if d["metadata"].get("labels", {}).get(POOL) == "primary"]

    try:
        spec = ModelDeploymentSpec.model_validate(md["spec"])
    except ValidationError as error:
        problem = Problem("InvalidSpec", _pydantic_message(error, "spec"))
        return await _report(ctx, md, Observed(generation, previous, utcnow(), 0,
                                               input_problem=problem))

    mv_name, version, problem = await _resolve(ctx, md, meta, spec, deployments, past)
    if version is not None and problem is None:
        issues = validate(version)
        if issues:
            problem = Problem("InvalidModelVersion",
                              f"ModelVersion {mv_name}: " + "; ".join(issues))
    if problem is not None or version is None or mv_name is None:
        # Leave every running revision exactly as it is: bad input never stops serving.
        serving = sum(d.get("status", {}).get("readyReplicas", 0) for d in deployments)
        return await _report(ctx, md, Observed(
            generation, previous, utcnow(), spec.replicas, older_serving=serving,
            input_problem=problem, revision=previous.get("revision"),
            model_version=previous.get("modelVersion"), history=past,
            endpoint=endpoint_url(name, namespace, ctx.settings),
            selector=_selector(name)))

    owned_mvs = ctx.store.owned("ModelVersion", namespace, name)
    revision = history.revision_for(mv_name, deployments, past, owned_mvs)
    target_name = deployment_name(name, revision, "stable")
    older = [d for d in deployments if d["metadata"]["name"] != target_name]
    autoscaled = spec.autoscaling is not None

    if spec.rollout.strategy == "Recreate" and older:
        for dep in older:  # Recreate: the old revision stops before the new one starts
            await _retire(ctx, namespace, dep)
        older = []

    existed = ctx.store.get("Deployment", namespace, target_name) is not None
    await ctx.ensure("Deployment", render_deployment(
        meta, spec, mv_name, version, revision, "stable",
        None if autoscaled else spec.replicas, ctx.settings))
    await ctx.ensure("Service", render_revision_service(meta, revision, "stable", ctx.settings))
    await ctx.ensure("Service", render_service(meta, ctx.settings))
    if not existed:
        await ctx.event(md, "RevisionCreated",
                        f"rolling out revision {revision} (ModelVersion {mv_name})")

    target = ctx.store.get("Deployment", namespace, target_name)
    if target is not None and _stale(target):
        # The Deployment controller has not looked at the latest change yet (even an
        # annotation bumps a Deployment's generation); its status would say "rolling
        # out" for a moment. Its next status update brings us back here.
        return None
    desired = spec.replicas
    if autoscaled and target is not None:
        desired = target.get("spec", {}).get("replicas") or spec.autoscaling.min_replicas
    done = rolled_out(target, desired)

    retired: list[int] = []
    if done and older:
        for dep in older:
            retired.append(int(dep["metadata"]["labels"].get(REVISION, "0")))
            await _retire(ctx, namespace, dep)
        older = []
        await ctx.event(md, "RolledOut",
                        f"revision {revision} ({mv_name}) serves all traffic; retired "
                        f"revision(s) {', '.join(map(str, sorted(retired)))}")
    await _delete_orphan_services(ctx, namespace, name, {target_name, name}, older)

    pods = [p for p in ctx.store.owned("Pod", namespace, name)
            if p["metadata"].get("labels", {}).get(REVISION) == str(revision)]
    deadline = spec.rollout.progress_deadline_seconds
    age = _age_seconds(target) if target else 0.0
    exceeded = not done and age > deadline
    now = utcnow()
    observed = Observed(
        generation, previous, now, desired, revision=revision, model_version=mv_name,
        deployment=target,
        older_serving=sum(d.get("status", {}).get("readyReplicas", 0) for d in older),
        pod_problem=None if done else pod_problem(pods, gpu_resource(version)),
        deadline_exceeded=exceeded,
        endpoint=endpoint_url(name, namespace, ctx.settings), selector=_selector(name),
        history=history.record(past, revision, mv_name, now, done, retired,
                               spec.revision_history_limit),
    )
    await _report(ctx, md, observed)
    if done:
        return None
    return max(1.0, deadline - age + 1) if not exceeded else 30.0


def _stale(deployment: dict[str, Any]) -> bool:
    observed = deployment.get("status", {}).get("observedGeneration", 0)
    return observed < deployment["metadata"].get("generation", 0)


def _selector(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in serving_selector(name).items())


async def _retire(ctx: Context, namespace: str, deployment: dict[str, Any]) -> None:
    dep_name = deployment["metadata"]["name"]
    await ctx.delete("apps/v1", "Deployment", namespace, dep_name)
    if ctx.store.get("Service", namespace, dep_name):
        await ctx.delete("v1", "Service", namespace, dep_name)


async def _delete_orphan_services(ctx: Context, namespace: str, md_name: str, keep: set[str],
                                  older: list[dict[str, Any]]) -> None:
    keep = keep | {d["metadata"]["name"] for d in older}
    for svc in ctx.store.owned("Service", namespace, md_name):
        svc_name = svc["metadata"]["name"]
        if svc_name not in keep and not ctx.store.get("Deployment", namespace, svc_name):
            await ctx.delete("v1", "Service", namespace, svc_name)


async def _report(ctx: Context, md: dict[str, Any], observed: Observed) -> float | None:
    """Write status if it changed; post Events for transitions a user should see."""
    meta = md["metadata"]
    status = compute(observed)
    previous = observed.previous
    metrics.set_phase(meta["namespace"], meta["name"], status["phase"])
    if not _status_changed(previous, status):
        return None
    log.debug("%s/%s status changes: %s", meta["namespace"], meta["name"],
              {k: v for k, v in status.items() if previous.get(k) != v})
    await ctx.kube.patch_status(API_VERSION, MD, meta["namespace"], meta["name"], status)
    md["status"] = {**previous, **status}  # what the watch will bring back shortly
    old_reason = _condition(previous, "Degraded")
    new_reason = _condition(status, "Degraded")
    if new_reason and new_reason != old_reason:
        degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
        await ctx.event(md, new_reason, degraded["message"], warning=True)
    elif old_reason and not new_reason:
        await ctx.event(md, "Recovered", "the problem is gone: " + status["conditions"][0][
            "message"])
    if status["phase"] == "Ready" and previous.get("phase") != "Ready":
        await ctx.event(md, "Ready", status["conditions"][0]["message"])
    return None


def _condition(status: dict[str, Any], type_: str) -> str | None:
    """The reason of condition `type_` when it is True, else None."""
    for condition in status.get("conditions") or ():
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition.get("reason")
    return None


def _status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return any(old.get(key) != value for key, value in new.items())
