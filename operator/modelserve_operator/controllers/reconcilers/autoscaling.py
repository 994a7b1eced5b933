"""The autoscaler of a ModelDeployment: apply it, remove it, and read what it reports.

Kubernetes' HorizontalPodAutoscaler (or KEDA's, which is one underneath) owns the stable
Deployment's replicas; the operator renders that Deployment without `replicas` while
`spec.autoscaling` is set. Here the operator only keeps the autoscaler object in shape
and turns its status into ModelDeployment status: no scaling decision is made here.
"""

from __future__ import annotations

import logging
from typing import Any

from modelserve_operator.api import ModelDeploymentSpec, ModelDeploymentStatus
from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.cluster.store import Store
from modelserve_operator.controllers.decisions.conditions import Problem
from modelserve_operator.render import Meta, render_hpa, render_scaled_object
from modelserve_operator.render.autoscaling import GPU_METRICS, QUEUE_METRIC
from modelserve_operator.render.names import service_name

log = logging.getLogger("modelserve.operator")

HPA = "HorizontalPodAutoscaler"
SCALED_OBJECT = "ScaledObject"
API_VERSIONS = {HPA: "autoscaling/v2", SCALED_OBJECT: "keda.sh/v1alpha1"}
MD = "ModelDeployment"
# Where KEDA's own HPA for a ScaledObject lives (KEDA names it so).
KEDA_HPA_PREFIX = "keda-hpa-"
# Field manager that holds a Deployment's replicas while they pass to the autoscaler.
HANDOVER_MANAGER = "modelserve-handover-to-autoscaler"
# HPA reasons that are not trouble: the target was scaled to zero on purpose.
_BENIGN_INACTIVE = ("ScalingDisabled",)


def _previous_provider(store: Store, namespace: str, md_name: str) -> str | None:
    """The provider recorded in status: which kind of autoscaler we may have left behind.

    ScaledObjects are not watched (KEDA may not be installed), so status is how the
    operator remembers one exists without reading the cluster every reconcile.
    """
    md = store.get(MD, namespace, md_name) or {}
    stored = ModelDeploymentStatus.read(md.get("status")).autoscaling
    return stored.provider if stored else None


async def _remove(ctx: Context, kind: str, namespace: str, name: str) -> None:
    if kind == HPA and ctx.store.get(HPA, namespace, name) is None:
        return  # HPAs are watched: not in the store means not there
    log.info("%s/%s: deleting %s %s (autoscaling off or provider changed)",
             namespace, name, kind, name)
    await ctx.delete(API_VERSIONS[kind], kind, namespace, name)


def _scale_target(obj: dict[str, Any] | None) -> str | None:
    return (((obj or {}).get("spec") or {}).get("scaleTargetRef") or {}).get("name")


async def _hand_over(ctx: Context, namespace: str, deployment: dict[str, Any],
                     spec: ModelDeploymentSpec) -> None:
    """Keep the Deployment's current replicas while the operator lets go of the field.

    The operator renders an autoscaled Deployment without `replicas`. Where the operator
    was the field's only manager (a promoted canary, or autoscaling just turned on),
    server-side apply would then *remove* it and the Deployment would fall back to one
    replica before the HPA reacts. Applying the current count once under a manager of
    its own first (the hand-over the Kubernetes server-side apply docs describe) keeps
    it; the HPA takes the field over with its next scale.
    """
    replicas = (deployment.get("spec") or {}).get("replicas")
    scaling = spec.autoscaling
    if replicas is None or scaling is None:
        return
    replicas = min(max(replicas, scaling.min_replicas, 1), scaling.max_replicas)
    meta = deployment["metadata"]
    log.info("%s/%s: handing %s replicas over to the autoscaler", namespace, meta["name"],
             replicas)
    await ctx.kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": meta["name"], "namespace": namespace},
                          "spec": {"replicas": replicas}}, field_manager=HANDOVER_MANAGER)


async def ensure_autoscaler(ctx: Context, meta: Meta, spec: ModelDeploymentSpec,
                            stable_deployment: str) -> None:
    """Apply the HPA or ScaledObject scaling `stable_deployment`; delete ours when off.

    Call it before the Deployments are applied: when the autoscaler is (re-)pointed at
    a Deployment it first hands that Deployment's replicas over (see `_hand_over`). The
    autoscaler always targets the stable revision's Deployment, so on promotion it is
    re-pointed by one apply of a changed scaleTargetRef and carries on from the new
    target's replicas. It waits for the Deployment to exist, so an HPA never reports a
    missing target.
    """
    namespace, name = meta.namespace, service_name(meta.name)
    previous = _previous_provider(ctx.store, namespace, meta.name)
    scaling = spec.autoscaling
    if scaling is None:
        await _remove(ctx, HPA, namespace, name)
        if previous == "keda":
            await _remove(ctx, SCALED_OBJECT, namespace, name)
        return
    target = ctx.store.get("Deployment", namespace, stable_deployment)
    if target is None:
        return  # the reconcile creates it now; its watch event brings us back
    if scaling.provider == "keda":
        if not ctx.prometheus_url:
            raise ValueError(
                "spec.autoscaling.provider keda needs the operator's Prometheus URL "
                "(--prometheus-url / Helm value prometheus.url) for its triggers")
        await _remove(ctx, HPA, namespace, name)
        if _scale_target(ctx.store.get(SCALED_OBJECT, namespace, name)) != stable_deployment:
            await _hand_over(ctx, namespace, target, spec)
        await ctx.ensure(SCALED_OBJECT, render_scaled_object(
            meta, spec, stable_deployment, ctx.prometheus_url))
        return
    if previous == "keda":
        await _remove(ctx, SCALED_OBJECT, namespace, name)
    if _scale_target(ctx.store.get(HPA, namespace, name)) != stable_deployment:
        await _hand_over(ctx, namespace, target, spec)
    await ctx.ensure(HPA, render_hpa(meta, spec, stable_deployment))


def parse_quantity(value: str | None) -> float | None:
    """A Kubernetes quantity as the HPA reports metrics ("62500m", "90", "1500u")."""
    if not value:
        return None
    factors = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
    try:
        if value[-1] in factors:
            return float(value[:-1]) * factors[value[-1]]
        return float(value)
    except ValueError:
        return None


def _pods_metric(hpa: dict[str, Any], metric: str) -> str | None:
    for current in (hpa.get("status") or {}).get("currentMetrics") or []:
        pods = current.get("pods") or {}
        if current.get("type") == "Pods" and pods.get("metric", {}).get("name") == metric:
            return (pods.get("current") or {}).get("averageValue")
    return None


def _problem(hpa_name: str, target: str | None, conditions: list[dict[str, Any]],
             metric: str) -> Problem | None:
    """Trouble the HPA reports that a user must fix, in the order they would fix it."""
    by_type = {c.get("type"): c for c in conditions}
    able = by_type.get("AbleToScale", {})
    if able.get("status") == "False":
        return Problem(
            able.get("reason") or "UnableToScale",
            f"the HorizontalPodAutoscaler {hpa_name} cannot scale Deployment {target}: "
            f"{able.get('message', '')}")
    active = by_type.get("ScalingActive", {})
    if active.get("status") == "False" and active.get("reason") not in _BENIGN_INACTIVE:
        return Problem(
            active.get("reason") or "ScalingInactive",
            f"autoscaling is inactive: the HorizontalPodAutoscaler {hpa_name} cannot use its "
            f"metrics ({active.get('message', '')}). Check that Prometheus scrapes "
            f"dcgm-exporter (or the runtime) and that Prometheus Adapter serves the pods "
            f"metric {metric} (docs/autoscaling.md).")
    return None


def autoscaler_status(store: Store, namespace: str, md_name: str,
                      ) -> tuple[Problem | None, dict[str, Any]]:
    """The autoscaler's trouble, if any, and `{"autoscaling": …}` for the md's status.

    Pure: reads only the store. `{"autoscaling": None}` removes the field once autoscaling
    is turned off. ScalingLimited (wanting more than maxReplicas, say) is not a problem:
    it is reported in status.autoscaling.conditions, and the ModelDeployment stays Ready.
    """
    md = store.get(MD, namespace, md_name) or {}
    scaling = (md.get("spec") or {}).get("autoscaling")
    if not scaling:
        return None, {"autoscaling": None}
    provider = scaling.get("provider", "hpa")
    gpu_metric = GPU_METRICS[scaling.get("metricSource", "dcgm")]
    fields: dict[str, Any] = {
        "provider": provider,
        "targetGPUUtilization": scaling.get("targetGPUUtilization", 70),
    }
    hpa_name = service_name(md_name)
    if provider == "keda":
        hpa_name = KEDA_HPA_PREFIX + hpa_name
    stored = ModelDeploymentStatus.read(md.get("status")).autoscaling
    previous = stored.wire() if stored else {}
    hpa = store.get(HPA, namespace, hpa_name)
    if hpa is None:
        return None, {"autoscaling": _with_removals(fields, previous)}

    status = hpa.get("status") or {}
    target = ((hpa.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
    conditions = [{k: c[k] for k in ("type", "status", "reason", "message") if c.get(k)}
                  for c in status.get("conditions") or []]
    gpu = parse_quantity(_pods_metric(hpa, gpu_metric))
    optional = {
        "scaleTarget": target,
        "currentReplicas": status.get("currentReplicas"),
        "desiredReplicas": status.get("desiredReplicas"),
        "currentGPUUtilization": round(gpu) if gpu is not None else None,
        "currentQueueDepth": _pods_metric(hpa, QUEUE_METRIC),
        "lastScaleTime": status.get("lastScaleTime"),
        "conditions": conditions or None,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return (_problem(hpa_name, target, conditions, gpu_metric),
            {"autoscaling": _with_removals(fields, previous)})


def _with_removals(fields: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """`fields`, plus None for each stored key it lacks: status is merge-patched, so a
    value that disappeared (the metric went missing) is removed instead of lingering, and
    the next reconcile compares equal and writes nothing."""
    return {**{k: None for k in previous if k not in fields}, **fields}
