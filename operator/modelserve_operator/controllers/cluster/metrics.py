"""The operator's own Prometheus metrics."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "modelserve_operator_reconciles_total", "Reconciles run.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "modelserve_operator_reconcile_duration_seconds", "Time one reconcile takes.", ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter(
    "modelserve_operator_reconcile_errors_total", "Reconciles that failed.", ["kind", "reason"]
)
API_WRITES = Counter(
    "modelserve_operator_api_writes_total",
    "Write calls to the API server (apply, status patch, create, delete).",
    ["verb", "kind"],
)
QUEUE_DEPTH = Gauge("modelserve_operator_queue_depth", "Objects waiting to be reconciled.")
PHASE = Gauge(
    "modelserve_operator_modeldeployment_phase",
    "1 for the phase each ModelDeployment is in.", ["namespace", "name", "phase"],
)
PHASES = ("Ready", "Progressing", "Paused", "Degraded")
CANARY_WEIGHT = Gauge(
    "modelserve_operator_canary_weight",
    "Percent of traffic the canary revision is meant to get (status.canaryWeight); 0 "
    "when no canary runs. Every replica reports it from its watch.",
    ["namespace", "name"],
)


def observe_canary_weight(namespace: str, name: str, weight: int | None,
                          deleted: bool = False) -> None:
    """Mirror status.canaryWeight of a watched ModelDeployment."""
    if deleted:
        with contextlib.suppress(KeyError):
            CANARY_WEIGHT.remove(namespace, name)
        return
    CANARY_WEIGHT.labels(namespace, name).set(weight or 0)


def set_phase(namespace: str, name: str, phase: str | None) -> None:
    for each in PHASES:
        PHASE.labels(namespace, name, each).set(1 if each == phase else 0)


def forget(namespace: str, name: str) -> None:
    for each in PHASES:
        with contextlib.suppress(KeyError):
            PHASE.remove(namespace, name, each)


def total_writes() -> float:
    """All API writes so far (tests and benchmarks read this from /metrics too)."""
    return sum(sample.value for metric in API_WRITES.collect() for sample in metric.samples
               if sample.name.endswith("_total"))
