"""The autoscaler of a ModelDeployment: an autoscaling/v2 HPA, or a KEDA ScaledObject.

Kubernetes' own HorizontalPodAutoscaler does the scaling; modelserve only says on what.
Both objects scale one Deployment: the stable revision's (docs/autoscaling.md gives the
canary rule). GPU utilisation reaches the HPA as a Pods metric served by Prometheus
Adapter under the names below (charts/prometheus-adapter-values.yaml has the rules);
KEDA asks Prometheus itself, with the queries rendered here.

dcgm-exporter labels its series with the GPU's pod in one of three ways, depending on
its flags and on the scrape (see docs/autoscaling.md):
  namespace / pod                        (default, or scraped with honorLabels: true)
  pod_namespace / pod_name               (dcgm-exporter --use-old-namespace)
  exported_namespace / exported_pod      (scraped without honorLabels: the scrape's own
                                          namespace/pod target labels took the names)
The queries accept all three, so the scrape settings of a cluster never break scaling.
"""

from __future__ import annotations

from typing import Any

from modelserve_operator.api import ModelDeploymentSpec
from modelserve_operator.render import labels, names
from modelserve_operator.render.settings import Meta

# Custom-metrics names the Prometheus Adapter rules expose (per pod).
GPU_METRICS = {
    "dcgm": "modelserve_dcgm_gpu_utilization",
    "runtime": "modelserve_runtime_gpu_utilization",
}
QUEUE_METRIC = "modelserve_queue_depth"

# The series behind them, as exporters name them.
DCGM_SERIES = "DCGM_FI_DEV_GPU_UTIL"
RUNTIME_GPU_SERIES = "modelserve_gpu_utilization_percent"
RUNTIME_QUEUE_SERIES = "modelserve_queue_depth"

# (namespace label, pod label) pairs dcgm-exporter's series may carry; see module doc.
DCGM_LABEL_VARIANTS = (
    ("namespace", "pod"),
    ("pod_namespace", "pod_name"),
    ("exported_namespace", "exported_pod"),
)
POD_LABEL = "modelserve_pod"  # the one label the KEDA queries fold the variants into


def _metadata(md: Meta) -> dict[str, Any]:
    return {
        "name": names.service_name(md.name),
        "namespace": md.namespace,
        "labels": labels.common_labels(md.name),
        "ownerReferences": [md.owner_reference()],
    }


def _target(deployment: str) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}


def _pods_metric(name: str, average: int) -> dict[str, Any]:
    return {"type": "Pods", "pods": {
        "metric": {"name": name},
        "target": {"type": "AverageValue", "averageValue": str(average)},
    }}


def render_hpa(md: Meta, spec: ModelDeploymentSpec, target_deployment: str) -> dict[str, Any]:
    """The HorizontalPodAutoscaler scaling `target_deployment` on mean GPU utilisation.

    A Pods metric with an AverageValue target: the HPA wants
    ceil(sum of the pods' utilisation / target) replicas, the same arithmetic as a
    resource-utilisation target. A queue-depth target, when set, is a second metric; the
    HPA follows whichever asks for more replicas, which is what catches a burst before
    GPU utilisation (a lagging average) shows it.
    """
    scaling = spec.autoscaling
    if scaling is None:
        raise ValueError("render_hpa needs spec.autoscaling")
    metrics = [_pods_metric(GPU_METRICS[scaling.metric_source], scaling.target_gpu_utilization)]
    if scaling.target_queue_depth is not None:
        metrics.append(_pods_metric(QUEUE_METRIC, scaling.target_queue_depth))
    hpa_spec: dict[str, Any] = {
        "scaleTargetRef": _target(target_deployment),
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "metrics": metrics,
    }
    if scaling.behavior:
        hpa_spec["behavior"] = scaling.behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(md), "spec": hpa_spec}


def pod_name_regex(deployment: str) -> str:
    """Names of the pods of `deployment`: <deployment>-<template hash>-<suffix>.

    PromQL anchors regexes at both ends, so another Deployment whose name merely starts
    the same (resnet50-r1 and resnet50-r12) never matches.
    """
    return f"{deployment}-[a-z0-9]+-[a-z0-9]+"


def dcgm_query(namespace: str, deployment: str) -> str:
    """Sum over the pods of `deployment` of each pod's mean GPU utilisation (percent).

    Each label variant is selected on its own and folded into one `modelserve_pod` label,
    so a pod's GPUs are averaged together whichever variant the cluster produces.
    """
    pods = pod_name_regex(deployment)
    parts = [
        f'label_replace({DCGM_SERIES}{{{ns}="{namespace}",{pod}=~"{pods}"}},'
        f' "{POD_LABEL}", "$1", "{pod}", "(.+)")'
        for ns, pod in DCGM_LABEL_VARIANTS
    ]
    return f"sum(avg by ({POD_LABEL}) ({' or '.join(parts)}))"


def runtime_query(series: str, namespace: str, deployment: str, per_pod: str) -> str:
    """Sum over the pods of `deployment` of a runtime series scraped with namespace/pod."""
    selector = f'{{namespace="{namespace}",pod=~"{pod_name_regex(deployment)}"}}'
    return f"sum({per_pod} by (pod) ({series}{selector}))"


def _trigger(server: str, query: str, threshold: int) -> dict[str, Any]:
    # AverageValue: KEDA's HPA wants ceil(query / threshold) replicas, so each query
    # returns a sum over pods and the threshold is the per-pod target.
    return {"type": "prometheus", "metricType": "AverageValue", "metadata": {
        "serverAddress": server, "query": query, "threshold": str(threshold)}}


def render_scaled_object(md: Meta, spec: ModelDeploymentSpec, target_deployment: str,
                         prometheus_url: str) -> dict[str, Any]:
    """The KEDA ScaledObject equivalent of `render_hpa`, with Prometheus triggers.

    KEDA creates and owns an HPA itself; `behavior` goes to that HPA. Unlike a plain HPA,
    KEDA may scale to zero (minReplicas 0).
    """
    scaling = spec.autoscaling
    if scaling is None:
        raise ValueError("render_scaled_object needs spec.autoscaling")
    ns = md.namespace
    if scaling.metric_source == "dcgm":
        gpu = dcgm_query(ns, target_deployment)
    else:
        gpu = runtime_query(RUNTIME_GPU_SERIES, ns, target_deployment, "avg")
    triggers = [_trigger(prometheus_url, gpu, scaling.target_gpu_utilization)]
    if scaling.target_queue_depth is not None:
        queue = runtime_query(RUNTIME_QUEUE_SERIES, ns, target_deployment, "sum")
        triggers.append(_trigger(prometheus_url, queue, scaling.target_queue_depth))
    so_spec: dict[str, Any] = {
        "scaleTargetRef": _target(target_deployment),
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "triggers": triggers,
    }
    if scaling.behavior:
        so_spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": scaling.behavior}}
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": _metadata(md), "spec": so_spec}
