"""A fake API server and Deployment controller for reconcile tests, with a hand-moved clock.

The reconcile talks to the facade in controllers/kube.py; `FakeApi` implements the same
methods over a dict of objects and records every action (cert-manager's fake clientset
plus ExpectedActions, in miniature). `Harness` feeds what the fake holds back into the
operator's store the way the watches would, stands in for the Deployment controller
(pods become ready when the test says so), and runs the level-based reconcile until it
has nothing left to do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from modelserve_operator.controllers.cluster.context import Context, rfc3339
from modelserve_operator.controllers.cluster.store import Store
from modelserve_operator.controllers.reconcilers.model_deployment import reconcile
from modelserve_operator.render import RenderSettings

NS = "ns"
Key = tuple[str, str, str]  # kind, namespace, name


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386): None deletes."""
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeApi:
    clock: Clock
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # verb, kind, name
    events: list[tuple[str, str]] = field(default_factory=list)         # reason, message

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A user's create or update (kubectl apply): generation moves with the spec."""
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", NS), meta["name"])
        old = self.objects.get(key)
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("namespace", NS)
        stored["metadata"]["generation"] = (old or {}).get("metadata", {}).get("generation", 0)
        if old is None or old.get("spec") != stored.get("spec"):
            stored["metadata"]["generation"] += 1
        stored["metadata"].setdefault("creationTimestamp", rfc3339(self.clock()))
        if old is not None:
            stored["status"] = old.get("status", {})
        self.objects[key] = stored
        return stored

    # The facade (controllers/kube.py), as the reconcile calls it.
    async def get(self, api_version: str, kind: str, namespace: str | None,
                  name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(found) if found else None

    async def list(self, api_version: str, kind: str, namespace: str | None,
                   label_selector: str | None = None) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, ns, _), o in self.objects.items()
                if k == kind and namespace in (None, ns)]

    async def apply(self, obj: dict[str, Any], field_manager: str = "modelserve-operator",
                    ) -> dict[str, Any]:
        self.actions.append(("apply", obj["kind"], obj["metadata"]["name"]))
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        old = self.objects.get(key)
        merged = copy.deepcopy(old) if old else {"metadata": {}}
        _merge(merged, {k: v for k, v in obj.items() if k != "status"})
        merged["metadata"]["generation"] = (old or {}).get("metadata", {}).get("generation", 0)
        if old is None or old.get("spec") != merged.get("spec") or (
                old["metadata"].get("annotations") != merged["metadata"].get("annotations")):
            merged["metadata"]["generation"] += 1
        merged["metadata"].setdefault("creationTimestamp", rfc3339(self.clock()))
        self.objects[key] = merged
        return copy.deepcopy(merged)

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                           status: dict[str, Any]) -> dict[str, Any]:
        self.actions.append(("patch-status", kind, name))
        obj = self.objects[(kind, namespace, name)]
        _merge(obj.setdefault("status", {}), status)
        return copy.deepcopy(obj)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.actions.append(("delete", kind, name))
        self.objects.pop((kind, namespace, name), None)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "Event":
            self.events.append((obj["reason"], obj["message"]))
            return obj
        self.actions.append(("create", obj["kind"], obj["metadata"]["name"]))
        return self.put(obj)

    async def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.put(obj)

    async def close(self) -> None:
        return None


@dataclass
class Harness:
    """The operator's reconcile over a FakeApi, with a Deployment controller stand-in."""

    clock: Clock = field(default_factory=Clock)
    api: FakeApi = field(init=False)
    store: Store = field(default_factory=Store)
    ctx: Context = field(init=False)
    # Deployments whose pods never become ready (a version that cannot start).
    never_ready: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.api = FakeApi(self.clock)
        self.ctx = Context(self.store, self.api, queue=None,  # type: ignore[arg-type]
                           settings=RenderSettings(), clock=self.clock, primed=True)

    def deployment_controller(self) -> None:
        """What kube-controller-manager and the kubelet would do: pods ready at once."""
        for (kind, _, name), obj in self.api.objects.items():
            if kind != "Deployment":
                continue
            replicas = obj.get("spec", {}).get("replicas", 1)
            ready = 0 if name in self.never_ready else replicas
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"],
                             "replicas": replicas, "updatedReplicas": replicas,
                             "readyReplicas": ready, "availableReplicas": ready}

    def sync_store(self) -> None:
        """The watches: the store holds what the API holds."""
        for kind in ("ModelDeployment", "ModelVersion", "Deployment", "Service", "Pod",
                     "HorizontalPodAutoscaler"):
            for obj in list(self.store.all(kind)):
                meta = obj["metadata"]
                if (kind, meta.get("namespace", ""), meta["name"]) not in self.api.objects:
                    self.store.delete(kind, meta.get("namespace", ""), meta["name"])
        for (kind, _, _), obj in self.api.objects.items():
            self.store.upsert(kind, copy.deepcopy(obj))

    async def reconcile(self, name: str) -> float | None:
        self.deployment_controller()
        self.sync_store()
        return await reconcile(self.ctx, NS, name)

    async def settle(self, name: str, max_wait: float = 0.0, rounds: int = 40) -> list[str]:
        """Reconcile until nothing changes; follow requeues up to `max_wait` seconds of
        clock. Returns the phases seen, in order, without repeats."""
        phases: list[str] = []
        waited = 0.0
        for _ in range(rounds):
            before = len(self.api.actions)
            requeue = await self.reconcile(name)
            phase = self.status(name).get("phase", "")
            if not phases or phases[-1] != phase:
                phases.append(phase)
            if len(self.api.actions) != before:
                continue
            if requeue is None or waited + requeue > max_wait:
                return phases
            self.clock.now += requeue
            waited += requeue
        raise AssertionError(f"no steady state after {rounds} reconciles: {phases}")

    def status(self, name: str) -> dict[str, Any]:
        return self.api.objects[("ModelDeployment", NS, name)].get("status", {})

    def condition(self, name: str, type_: str) -> tuple[str, str]:
        for c in self.status(name).get("conditions", []):
            if c["type"] == type_:
                return c["status"], c["reason"]
        raise KeyError(type_)

    def deployments(self) -> dict[str, int]:
        return {name: obj["spec"].get("replicas", 0) for (kind, _, name), obj
                in self.api.objects.items() if kind == "Deployment"}


def version(name: str) -> dict[str, Any]:
    return {"apiVersion": "modelserve.io/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"model": {"uri": f"https://models.example/{name}.onnx", "format": "onnx"},
                     "runtime": {"backend": "onnxruntime"}}}


def model_deployment(name: str, model_version: str, replicas: int = 2,
                     rollout: dict[str, Any] | None = None,
                     annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": f"uid-{name}"}
    if annotations:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {"modelVersion": model_version, "replicas": replicas}
    if rollout:
        spec["rollout"] = rollout
    return {"apiVersion": "modelserve.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": meta, "spec": spec}
