"""In-memory view of the cluster, fed by Kopf's watches.

Reconciles read only from here, so a reconcile with nothing to change makes no API call
at all, reads included. Each entry is slimmed to what the operator uses: at a thousand
ModelDeployments that keeps the operator's memory small.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from modelserve_operator.render.labels import DEPLOYMENT as DEPLOYMENT_LABEL

Key = tuple[str, str]  # (namespace, name)


def _slim_meta(meta: dict[str, Any]) -> dict[str, Any]:
    keep = ("name", "namespace", "uid", "generation", "labels", "annotations",
            "ownerReferences", "deletionTimestamp", "creationTimestamp")
    return {k: meta[k] for k in keep if k in meta}


def slim(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The parts of an object the operator reads."""
    out: dict[str, Any] = {"metadata": _slim_meta(body.get("metadata", {}))}
    if kind == "Pod":
        status = body.get("status", {})
        out["status"] = {
            "phase": status.get("phase"),
            # Where a pod that is not Ready answers its progress (decisions/pod_progress.py).
            "podIP": status.get("podIP"),
            "conditions": status.get("conditions", []),
            "containerStatuses": [
                {"ready": c.get("ready"), "restartCount": c.get("restartCount", 0),
                 "state": c.get("state", {})}
                for c in status.get("containerStatuses", [])
            ],
            # The model fetch: its termination message says why a model cannot be served
            # (decisions/conditions.py), and its restarts count as the canary's.
            "initContainerStatuses": [
                {"name": c.get("name"), "restartCount": c.get("restartCount", 0),
                 "state": c.get("state", {}), "lastState": c.get("lastState", {})}
                for c in status.get("initContainerStatuses", [])
            ],
        }
    elif kind in ("ModelDeployment", "ModelVersion"):
        out["spec"] = body.get("spec", {})
        out["status"] = body.get("status", {})
    elif kind == "Deployment":
        out["spec"] = {"replicas": body.get("spec", {}).get("replicas")}
        out["status"] = body.get("status", {})
    elif kind == "HorizontalPodAutoscaler":
        # spec: which Deployment it scales; status: replicas, metrics, conditions.
        out["spec"] = body.get("spec", {})
        out["status"] = body.get("status", {})
    else:
        out["status"] = body.get("status", {})
    return out


class Store:
    """Objects by kind and (namespace, name), plus an index by owning ModelDeployment."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[Key, dict[str, Any]]] = defaultdict(dict)
        self._owned: dict[str, dict[Key, set[str]]] = defaultdict(lambda: defaultdict(set))

    def upsert(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = slim(kind, body)
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        self._objects[kind][key] = obj
        owner = meta.get("labels", {}).get(DEPLOYMENT_LABEL)
        if owner:
            self._owned[kind][(key[0], owner)].add(key[1])
        return obj

    def delete(self, kind: str, namespace: str, name: str) -> None:
        obj = self._objects[kind].pop((namespace, name), None)
        if obj:
            owner = obj["metadata"].get("labels", {}).get(DEPLOYMENT_LABEL)
            if owner:
                self._owned[kind][(namespace, owner)].discard(name)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects[kind].get((namespace, name))

    def owned(self, kind: str, namespace: str, md_name: str) -> list[dict[str, Any]]:
        """Objects of `kind` labelled as belonging to ModelDeployment `md_name`."""
        names = sorted(self._owned[kind].get((namespace, md_name), ()))
        return [self._objects[kind][(namespace, n)] for n in names
                if (namespace, n) in self._objects[kind]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self._objects[kind].values())

    def count(self, kind: str) -> int:
        return len(self._objects[kind])
