"""Kopf registrations, all in one place; each is a one-line delegate.

Only watch-event handlers are used: Kopf's change-detecting handlers (create/update/
resume) store progress and a last-handled-configuration annotation on every object,
which costs extra API writes per change. Here the watches feed an in-memory store and a
work queue (operator_process), and `reconcilers.model_deployment.reconcile` is the single,
level-based place where state converges.
"""

from __future__ import annotations

from typing import Any

import kopf

from modelserve_operator import GROUP, VERSION
from modelserve_operator.controllers import operator_process
from modelserve_operator.render.labels import MANAGED_BY

OWNED = {MANAGED_BY: "modelserve"}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    operator_process.configure_kopf(settings)


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.AiohttpSession:
    return await operator_process.login(**kwargs)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    await operator_process.shutdown()


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def model_deployment_event(event: dict[str, Any], **_: Any) -> None:
    operator_process.observe("ModelDeployment", event)


@kopf.on.event(GROUP, VERSION, "modelversions")
async def model_version_event(event: dict[str, Any], **_: Any) -> None:
    operator_process.observe("ModelVersion", event)


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
async def deployment_event(event: dict[str, Any], **_: Any) -> None:
    operator_process.observe("Deployment", event)


@kopf.on.event("", "v1", "services", labels=OWNED)
async def service_event(event: dict[str, Any], **_: Any) -> None:
    operator_process.observe("Service", event)


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def pod_event(event: dict[str, Any], **_: Any) -> None:
    operator_process.observe("Pod", event)


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=OWNED)
async def hpa_event(event: dict[str, Any], **_: Any) -> None:
    operator_process.observe("HorizontalPodAutoscaler", event)

