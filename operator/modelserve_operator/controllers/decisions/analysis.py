"""Canary analysis: pure verdicts over measurements (reconcilers/analysis.py takes them).

A step's metrics are measured every `interval`, `count` times; a metric fails the step
once more than `failureLimit` of its measurements are out of bounds. A query that
returns no data is retried at the next interval (a canary that just started has few
samples); `count` answers of no data fail the step, so a canary that serves nothing
cannot pass (add `or vector(0)` to a query where no data means zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelserve_operator.api.modeldeployment import AnalysisMetric
from modelserve_operator.controllers.decisions.canary import parse_duration


@dataclass(frozen=True)
class Verdict:
    passed: bool | None          # None while measurements are still due
    message: str
    due: tuple[str, ...] = ()    # metrics to measure now


def judge(metrics: list[AnalysisMetric], measurements: list[dict[str, Any]],
          now: float) -> Verdict:
    """The verdict of one analysis step from the measurements taken so far."""
    if not metrics:
        return Verdict(True, "canary pods ready and not restarting")
    due: list[str] = []
    pending: list[str] = []
    for metric in metrics:
        taken = [m for m in measurements if m["metric"] == metric.name]
        valued = [m for m in taken if m.get("value") is not None]
        failures = [m for m in valued if not m["passed"]]
        if len(failures) > metric.failure_limit:
            return Verdict(False, f"{metric.name} = {failures[-1]['value']:g} is out of bounds "
                                  f"({_bounds(metric)}) {len(failures)} time(s), more than "
                                  f"failureLimit {metric.failure_limit}")
        if len(taken) - len(valued) >= metric.count:
            return Verdict(False, f"{metric.name}: the query returned no data "
                                  f"{len(taken) - len(valued)} times; check "
                                  f"spec.rollout.analysis.metrics[].prometheus.query")
        if len(valued) >= metric.count:
            continue
        pending.append(f"{metric.name} {len(valued)}/{metric.count}")
        last_at = max((m["at"] for m in taken), default=None)
        if last_at is None or now - last_at >= parse_duration(metric.interval):
            due.append(metric.name)
    if not pending:
        return Verdict(True, "all analysis metrics within bounds")
    return Verdict(None, "measured " + ", ".join(pending), tuple(due))


def _bounds(metric: AnalysisMetric) -> str:
    parts = []
    if metric.min is not None:
        parts.append(f">= {metric.min:g}")
    if metric.max is not None:
        parts.append(f"<= {metric.max:g}")
    return " and ".join(parts) or "no bounds"


def within(metric: AnalysisMetric, value: float | None) -> bool:
    if value is None or math.isnan(value):
        return False
    if metric.max is not None and value > metric.max:
        return False
    return not (metric.min is not None and value < metric.min)


def render_query(query: str, **values: str) -> str:
    """Fill {{namespace}}, {{deployment}}, {{revision}}, {{canary}} … into a query."""
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value).replace("{{ " + key + " }}", value)
    return query
