"""What every reconcile needs: the cluster view, the writer, the queue, the config."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelserve_operator.controllers.cluster.client import Kube
from modelserve_operator.controllers.cluster.pod_progress import PodProgressReader
from modelserve_operator.controllers.cluster.queue import WorkQueue
from modelserve_operator.controllers.cluster.store import Store
from modelserve_operator.render import RenderSettings

log = logging.getLogger("modelserve.operator")

APPLIED_HASH = "modelserve.io/applied-hash"
# Kinds the operator's watches keep in the store (handlers.py).
WATCHED = frozenset({"ModelDeployment", "ModelVersion", "Deployment", "Service", "Pod",
                     "HorizontalPodAutoscaler"})
TEMPLATE_HASH = "modelserve.io/template-hash"


def rfc3339(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> str:
    return rfc3339(time.time())


def content_hash(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:length]


@dataclass
class Context:
    store: Store
    kube: Kube
    queue: WorkQueue
    settings: RenderSettings
    prometheus_url: str | None = None
    # Once the store holds a full listing (and every watch event since), a miss means the
    # object does not exist: no read is needed before creating it.
    primed: bool = False
    instance: str = field(default_factory=lambda: os.environ.get("HOSTNAME", "local"))
    # Optional route kinds this cluster answered 404 for (reconcilers/.../traffic.py).
    unserved_kinds: set[str] = field(default_factory=set)
    # Seconds since the epoch; tests inject a clock they move by hand.
    clock: Callable[[], float] = time.time
    # GETs the progress endpoint of pods that are not Ready; tests inject canned answers.
    read_progress: Callable[..., Any] = field(default_factory=PodProgressReader)

    def now(self) -> float:
        return self.clock()

    def utcnow(self) -> str:
        """The clock's time in RFC 3339, as status and Events store it."""
        return rfc3339(self.clock())

    async def ensure(self, kind: str, obj: dict[str, Any]) -> bool:
        """Apply `obj` unless the live object already carries its hash. True if written.

        The hash of what we last applied lives on the object itself, so an operator that
        restarts (or a second replica taking over) still skips unchanged objects.
        """
        digest = content_hash(obj)
        meta = obj["metadata"]
        meta.setdefault("annotations", {})[APPLIED_HASH] = digest
        ns, name = meta.get("namespace", ""), meta["name"]
        live = self.store.get(kind, ns, name)
        if live is None and (not self.primed or kind not in WATCHED):
            # Not listed yet, or a kind no watch feeds (HTTPRoute …): one read first.
            found = await self.kube.get(obj["apiVersion"], kind, ns, name)
            live = self.store.upsert(kind, found) if found else None
        if live and live["metadata"].get("annotations", {}).get(APPLIED_HASH) == digest:
            return False
        applied = await self.kube.apply(obj)
        if applied:
            self.store.upsert(kind, applied)
        return True

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        await self.kube.delete(api_version, kind, namespace, name)
        self.store.delete(kind, namespace, name)

    async def event(self, md: dict[str, Any], reason: str, message: str,
                    warning: bool = False) -> None:
        """A Kubernetes Event on the ModelDeployment, for a transition a user should see."""
        meta = md["metadata"]
        now = self.utcnow()
        (log.warning if warning else log.info)(
            "%s/%s %s: %s", meta["namespace"], meta["name"], reason, message)
        try:
            await self.kube.create({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": "modelserve.io/v1alpha1",
                                   "kind": "ModelDeployment", "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta.get("uid")},
                "reason": reason, "message": message[:1024],
                "type": "Warning" if warning else "Normal",
                "source": {"component": "modelserve-operator"},
                "reportingComponent": "modelserve-operator", "reportingInstance": self.instance,
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            })
        except Exception as error:  # an Event is a courtesy; never fail a reconcile on it
            log.warning("could not post event %s: %s", reason, error)
