"""Process-wide operator state: Kopf settings, credentials, the store and the queue."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import kopf

from modelserve_operator.api import ModelDeploymentStatus
from modelserve_operator.controllers.cluster import leader, metrics
from modelserve_operator.controllers.cluster.client import ApiError, Kube
from modelserve_operator.controllers.cluster.context import Context
from modelserve_operator.controllers.cluster.queue import Backoff, WorkQueue
from modelserve_operator.controllers.cluster.store import Store
from modelserve_operator.controllers.reconcilers import analysis, model_deployment, model_version
from modelserve_operator.render import RenderSettings
from modelserve_operator.render.labels import DEPLOYMENT, MANAGED_BY
from modelserve_operator.render.names import label_value

log = logging.getLogger("modelserve.operator")


@dataclass
class Config:
    """Operator settings from the command line / Helm values."""

    workers: int = 16
    resync_seconds: float = 300.0
    prometheus_url: str | None = None
    leader_election: leader.LeaderConfig | None = None  # None: reconcile from the start
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    kube_context: str | None = None  # kubeconfig context; None: the current one
    render: RenderSettings = field(default_factory=RenderSettings)


@dataclass
class State:
    config: Config = field(default_factory=Config)
    store: Store = field(default_factory=Store)
    kube: Kube | None = None
    context: Context | None = None
    queue: WorkQueue | None = None
    resync: asyncio.Task[None] | None = None
    elector: leader.LeaderElector | None = None
    election: asyncio.Task[None] | None = None
    # Label values are truncated for long names: map them back to ModelDeployment names.
    md_by_label: dict[tuple[str, str], str] = field(default_factory=dict)
    primed: asyncio.Lock = field(default_factory=asyncio.Lock)
    backoff: Backoff = field(default_factory=Backoff)
    is_primed: bool = False


STATE = State()


class EventsOnlyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """Kopf deep-copies every watched object on every event to build the "essence" that
    its change-detecting handlers (create/update/field) compare. The operator registers
    only event handlers, so it needs no essence: profiled at 300 models, the copies took
    about half of the operator's CPU."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Kopf settings chosen for zero steady-state writes and a small footprint."""
    settings.persistence.finalizer = "modelserve.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="modelserve.io")
    settings.persistence.diffbase_storage = EventsOnlyDiffBase(
        prefix="modelserve.io", key="last-handled-configuration")
    # Kopf would post every INFO log line as an Event (one API write each); the
    # operator posts its own Events for transitions that matter.
    settings.posting.enabled = False
    # Resources are known at start; no need to watch CRDs (and no RBAC for it).
    settings.scanning.disabled = True
    selector = f"{MANAGED_BY}=modelserve"
    for resource in ("deployments", "services", "pods", "horizontalpodautoscalers"):
        settings.watching.label_selectors[resource] = selector
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.batching.idle_timeout = 30.0
    settings.batching.batch_window = 0.05
    _start()


async def login(**_: Any) -> kopf.AiohttpSession:
    """One credential source for Kopf's watches and the operator's writes: the
    kubernetes_asyncio loader (kubeconfig contexts, exec plugins, rotated tokens)."""
    if STATE.kube is None:
        STATE.kube = await Kube.connect(STATE.config.kube_context)
    return await STATE.kube.kopf_session()


def _start() -> None:
    STATE.queue = WorkQueue(_work, workers=STATE.config.workers)
    STATE.resync = asyncio.create_task(_resync_forever())
    if STATE.config.leader_election is None:
        STATE.queue.start()
        return
    # A standby watches and queues like the leader (its store stays warm), but its
    # workers start only once it holds the Lease.
    STATE.elector = leader.LeaderElector(STATE.config.leader_election, _kube_after_login,
                                         on_started=STATE.queue.start, on_lost=_leadership_lost)
    STATE.election = asyncio.create_task(STATE.elector.run())
    STATE.election.add_done_callback(_election_ended)


def _election_ended(task: asyncio.Task[None]) -> None:
    """The elector runs for the life of the process; if it ever stops (other than at
    shutdown), this replica can no longer prove it leads: stop, as if the Lease were lost."""
    if task.cancelled():
        return
    log.critical("leader election stopped unexpectedly: %r", task.exception())
    _leadership_lost()


async def _kube_after_login() -> Kube:
    while STATE.kube is None:  # Kopf runs startup handlers before login
        await asyncio.sleep(0.1)
    return _context().kube


def _leadership_lost() -> None:
    """Stop writing at once (no await, no in-flight reconcile survives) and exit: the
    pod restarts as a clean standby."""
    log.critical("leadership lost; exiting so that only one replica reconciles")
    os._exit(1)


async def shutdown() -> None:
    if STATE.resync:
        STATE.resync.cancel()
    if STATE.election:
        STATE.election.cancel()
    if STATE.queue:
        await STATE.queue.stop()
    if STATE.elector:  # after the workers stopped: the next leader starts on a quiet Lease
        await STATE.elector.release()
    await analysis.close()
    if STATE.kube:
        await STATE.kube.close()


def _context() -> Context:
    if STATE.context is None:
        if STATE.kube is None or STATE.queue is None:
            raise RuntimeError("operator used before login and startup")
        STATE.context = Context(STATE.store, STATE.kube, STATE.queue,
                                STATE.config.render, STATE.config.prometheus_url)
    return STATE.context


# What the store must hold before the first reconcile: (apiVersion, kind, selector).
_PRIMED_KINDS = (
    ("modelserve.io/v1alpha1", "ModelDeployment", None),
    ("modelserve.io/v1alpha1", "ModelVersion", None),
    ("apps/v1", "Deployment", f"{MANAGED_BY}=modelserve"),
    ("v1", "Service", f"{MANAGED_BY}=modelserve"),
    ("v1", "Pod", f"{MANAGED_BY}=modelserve"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", f"{MANAGED_BY}=modelserve"),
)


async def _prime(ctx: Context) -> None:
    """List everything once before the first reconcile.

    Kopf's watches fill the store concurrently; a reconcile that ran before they had
    listed, say, the Deployments would think they are missing. One LIST per kind at start
    makes the first reconcile as well-informed as any later one (and write nothing).
    """
    async with STATE.primed:
        if STATE.is_primed:
            return
        for api_version, kind, selector in _PRIMED_KINDS:
            for namespace in STATE.config.namespaces or [None]:
                for item in await ctx.kube.list(api_version, kind, namespace, selector):
                    item.setdefault("apiVersion", api_version)
                    meta = item.get("metadata", {})
                    if STATE.store.get(kind, meta.get("namespace", ""), meta["name"]) is None:
                        STATE.store.upsert(kind, item)
        STATE.is_primed = True
        ctx.primed = True
        log.info("store primed: %s", {k: STATE.store.count(k) for _, k, _ in _PRIMED_KINDS})


async def _work(key: Hashable) -> float | None:
    kind, namespace, name = key  # type: ignore[misc]
    if not STATE.is_primed:
        await _prime(_context())
    reconciler = model_deployment if kind == "md" else model_version
    label = "ModelDeployment" if kind == "md" else "ModelVersion"
    with metrics.RECONCILE_SECONDS.labels(label).time():
        try:
            requeue = await reconciler.reconcile(_context(), namespace, name)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            metrics.RECONCILES.labels(label, "error").inc()
            status = getattr(error, "status", None)
            metrics.RECONCILE_ERRORS.labels(
                label, f"http{status}" if isinstance(error, ApiError) else type(error).__name__,
            ).inc()
            # A conflict is someone else's fresh write: worth retrying at once, then slower.
            delay = STATE.backoff.failed(key, first=0.2 if status == 409 else 1.0)
            log.warning("%s %s/%s: %s; retrying in %.1fs", label, namespace, name, error,
                        delay, exc_info=not isinstance(error, ApiError))
            return delay
    STATE.backoff.succeeded(key)
    metrics.RECONCILES.labels(label, "ok").inc()
    return requeue


async def _resync_forever() -> None:
    """Level-based safety net: look at everything now and then, even without events."""
    while True:
        await asyncio.sleep(STATE.config.resync_seconds)
        for md in STATE.store.all("ModelDeployment"):
            meta = md["metadata"]
            _enqueue(("md", meta["namespace"], meta["name"]))


def _enqueue(key: tuple[str, str, str]) -> None:
    if STATE.queue is not None:
        STATE.queue.add(key)


def observe(kind: str, event: dict[str, Any]) -> None:
    """Feed one watch event into the store and queue the reconciles it concerns."""
    body = event.get("object") or {}
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name")
    if not name:
        return
    if event.get("type") == "DELETED":
        STATE.store.delete(kind, namespace, name)
    else:
        STATE.store.upsert(kind, body)

    if kind == "ModelDeployment":
        STATE.md_by_label[(namespace, label_value(name))] = name
        metrics.observe_canary_weight(
            namespace, name, ModelDeploymentStatus.read(body.get("status")).canary_weight,
            deleted=event.get("type") == "DELETED")
        _enqueue(("md", namespace, name))
    elif kind == "ModelVersion":
        _enqueue(("mv", namespace, name))
        for md in STATE.store.all("ModelDeployment"):
            if (md["metadata"]["namespace"] == namespace
                    and md.get("spec", {}).get("modelVersion") == name):
                _enqueue(("md", namespace, md["metadata"]["name"]))
    owner_label = meta.get("labels", {}).get(DEPLOYMENT)
    if owner_label and kind != "ModelDeployment":
        owner = STATE.md_by_label.get((namespace, owner_label), owner_label)
        _enqueue(("md", namespace, owner))


