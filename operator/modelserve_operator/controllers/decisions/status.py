"""ModelDeployment status as a pure function of what the reconcile observed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelserve_operator.api.modeldeployment import HistoryEntry, ModelDeploymentStatus
from modelserve_operator.controllers.decisions.conditions import Problem, set_condition


@dataclass(frozen=True)
class Observed:
    """Everything status depends on, gathered by the reconcile."""

    generation: int
    previous: dict[str, Any]              # the status as stored now
    now: str                              # RFC 3339, passed in so this stays pure
    desired_replicas: int
    revision: int | None = None           # revision that should serve
    model_version: str | None = None
    deployment: dict[str, Any] | None = None   # its Deployment (slim), if any
    older_serving: int = 0                # pods of older revisions still serving
    input_problem: Problem | None = None  # the spec or its version is unusable
    pod_problem: Problem | None = None
    deadline_exceeded: bool = False
    endpoint: str | None = None
    selector: str | None = None
    history: Sequence[HistoryEntry] = ()
    rollout_problem: Problem | None = None      # a canary was rolled back
    progressing: tuple[bool, str, str] | None = None  # the rollout's own progress
    fetching_pods: int = 0                # pods of that revision still downloading the model
    model_progress: dict[str, Any] | None = None  # decisions/pod_progress.py's summary
    extra: dict[str, Any] = field(default_factory=dict)  # rollout fields, None = remove


def rolled_out(deployment: dict[str, Any] | None, desired: int) -> bool:
    """True when the Deployment runs `desired` ready pods of its current template."""
    if deployment is None:
        return False
    status = deployment.get("status", {})
    generation = deployment["metadata"].get("generation", 0)
    return (status.get("observedGeneration", 0) >= generation
            and status.get("updatedReplicas", 0) >= desired
            and status.get("readyReplicas", 0) >= desired
            and status.get("replicas", 0) <= desired)


def compute(o: Observed) -> dict[str, Any]:
    """The status to store: conditions, phase, replica counts, revision, endpoint."""
    dep_status = (o.deployment or {}).get("status", {})
    ready_pods = dep_status.get("readyReplicas", 0)
    done = rolled_out(o.deployment, o.desired_replicas)
    serving = ready_pods > 0 or o.older_serving > 0 or o.desired_replicas == 0

    problem = o.input_problem or o.rollout_problem or o.pod_problem
    if problem is None and o.deadline_exceeded:
        problem = Problem(
            "ProgressDeadlineExceeded",
            f"revision {o.revision} did not become ready within "
            f"spec.rollout.progressDeadlineSeconds; the previous revision keeps serving.")

    previous = o.previous.get("conditions")
    if o.input_problem:
        progressing = (False, o.input_problem.reason, "waiting for the spec to be fixed")
    elif o.progressing is not None:
        progressing = o.progressing
    elif done:
        progressing = (False, "RolloutComplete",
                       f"revision {o.revision} ({o.model_version}) is fully rolled out")
    else:
        if o.model_progress:
            downloading = f"; {o.model_progress['message']}"
        elif o.fetching_pods:
            downloading = f"; {o.fetching_pods} downloading the model"
        else:
            downloading = ""
        progressing = (True, "RollingOut",
                       f"revision {o.revision} ({o.model_version}): {ready_pods}/"
                       f"{o.desired_replicas} pods ready{downloading}")
    # Ready says what serves, whatever else is wrong: a revision whose ModelVersion was
    # deleted keeps serving, and Degraded says why nothing can change.
    if done and not (ready_pods == 0 and o.desired_replicas):
        ready = (True, "Serving" if o.desired_replicas else "ScaledToZero",
                 f"{ready_pods}/{o.desired_replicas} pods of revision {o.revision} ready")
    elif serving and o.desired_replicas:
        others = f"; older revisions serve {o.older_serving} more" if o.older_serving else ""
        ready = (False, "PartiallyReady",
                 f"{ready_pods}/{o.desired_replicas} pods of revision {o.revision} ready"
                 + others)
    else:
        ready = (False, problem.reason if problem else "NoReadyPods",
                 problem.message if problem else "no pod is ready yet")
    degraded = (True, problem.reason, problem.message) if problem else (
        False, "AsExpected", "no problems found")

    if degraded[0]:
        phase = "Degraded"
    elif progressing[0] and progressing[1] in ("Paused", "Pausing"):
        phase = "Paused" if progressing[1] == "Paused" else "Progressing"
    elif ready[0] and not progressing[0]:
        phase = "Ready"
    else:
        phase = "Progressing"
    reconciling, stalled = kstatus_conditions(phase, ready, progressing, degraded)

    conditions = [
        set_condition(previous, "Ready", *ready, o.generation, o.now),
        set_condition(previous, "Progressing", *progressing, o.generation, o.now),
        set_condition(previous, "Degraded", *degraded, o.generation, o.now),
        set_condition(previous, "Reconciling", *reconciling, o.generation, o.now),
        set_condition(previous, "Stalled", *stalled, o.generation, o.now),
    ]

    status: dict[str, Any] = {
        "observedGeneration": o.generation,
        "conditions": conditions,
        "phase": phase,
        "replicas": dep_status.get("replicas", 0),
        "readyReplicas": ready_pods,
        "desiredReplicas": o.desired_replicas,
        "ready": f"{ready_pods}/{o.desired_replicas}",
    }
    optional = {"selector": o.selector, "endpoint": o.endpoint, "revision": o.revision,
                "modelVersion": o.model_version,
                "history": [e.wire() for e in o.history] or None}
    status.update({k: v for k, v in optional.items() if v is not None})
    # None removes it: progress is only shown while pods are on their way.
    status["modelProgress"] = o.model_progress
    status.update(o.extra)
    # Keep what this reconcile does not own (rollout fields written by other code paths).
    for key in ("revision", "modelVersion", "templateHash"):
        if key not in status and key in o.previous:
            status[key] = o.previous[key]
    # Through the model the CRD schema is generated from: a misspelt or mistyped field
    # fails here, in tests, instead of being pruned by the API server.
    return ModelDeploymentStatus.model_validate(status).merge_patch()


Verdict = tuple[bool, str, str]  # (status, reason, message) of one condition


def kstatus_conditions(phase: str, ready: Verdict, progressing: Verdict,
                       degraded: Verdict) -> tuple[Verdict, Verdict]:
    """(Reconciling, Stalled): the "abnormal-true" conditions kstatus reads.

    Flux, kpt and other tools judge a custom resource with kstatus, which ignores
    Progressing and Degraded: Reconciling=True reads InProgress, Stalled=True reads Failed,
    neither reads Current. So a rollout that moves, pauses or analyses reconciles; a
    Degraded object stalls, because every Degraded reason needs a person to act (fix the
    spec, free GPUs, change a version that was rolled back) before it can progress.
    """
    if phase == "Degraded":
        return (False, "Stalled", "no progress is possible until the problem is fixed"), (
            True, degraded[1], degraded[2])
    not_stalled = (False, "AsExpected", "no problems found")
    if phase in ("Progressing", "Paused"):
        reason, message = (progressing[1], progressing[2]) if progressing[0] else (
            ready[1], ready[2])
        return (True, reason, message), not_stalled
    return (False, "Reconciled", "the desired state is reached"), not_stalled


def typed(raw: dict[str, Any] | None) -> ModelDeploymentStatus:
    """The stored status read through the model its CRD schema is generated from."""
    return ModelDeploymentStatus.read(raw)


def changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether writing `new` would change anything in the stored status."""
    return any(old.get(key) != value for key, value in new.items())
