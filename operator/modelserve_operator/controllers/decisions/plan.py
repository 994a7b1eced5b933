"""Decide which revisions serve and how: a pure function from observations to a Plan.

The Plan says which revision is stable, which (if any) is the canary, how many replicas
each gets and what weight the canary has. Recreate and the no-step Rolling strategy are
canaries with trivial steps, so one state machine (rollout.advance) covers them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelserve_operator.api import ModelDeploymentSpec
from modelserve_operator.api.modeldeployment import (
    CanaryStep,
    ModelDeploymentStatus,
    RolloutControl,
)
from modelserve_operator.controllers.decisions.canary import (
    CanaryState,
    Decision,
    Observations,
    advance,
    canary_replicas,
    stable_replicas,
)
from modelserve_operator.controllers.decisions.conditions import Problem

# Rolling: bring the new revision to full size, then switch; the old one serves meanwhile.
ROLLING_STEPS = [CanaryStep(set_weight=100)]


@dataclass
class Plan:
    stable: int
    stable_version: str
    stable_replicas: int
    canary: int | None = None
    canary_version: str | None = None
    canary_replicas: int = 0
    weight: int = 0
    state: CanaryState | None = None
    previous: int | None = None
    previous_retire_at: float | None = None
    aborted: int | None = None
    recreate: bool = False
    problem: Problem | None = None
    progressing: tuple[bool, str, str] | None = None
    paused: bool = False
    consumed_control: bool = False
    requeue: float | None = None
    events: list[tuple[str, str, bool]] = field(default_factory=list)


@dataclass(frozen=True)
class Inputs:
    """What plan() looks at, gathered by the reconcile."""

    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus
    target: int
    target_version: str
    total: int                        # replicas wanted in all (spec or HPA)
    ready: dict[int, int]             # revision -> ready pods of its Deployment
    restarts: dict[int, int]          # revision -> container restarts of its pods
    created: dict[int, float]         # revision -> Deployment creation (Unix seconds)
    version_of: dict[int, str]        # revision -> ModelVersion of its Deployment
    now: float
    analysis: bool | None = None
    analysis_message: str = ""
    steps_requested_for: int | None = None  # rollback to this revision through the steps


def _steps(spec: ModelDeploymentSpec) -> list[CanaryStep]:
    if spec.rollout.strategy == "Canary" and spec.rollout.canary is not None:
        return list(spec.rollout.canary.steps)
    return ROLLING_STEPS


# A revision that once served in full (still, or until something newer replaced it).
_SERVED = ("Serving", "Superseded")


def is_rollback(i: Inputs, stable: int) -> bool:
    """Whether reaching the target is a rollback that goes straight to it.

    During an incident the old version must serve now, not after a canary's pauses: like
    Argo Rollouts' rollbackWindow, a revision that served before (and is retained in
    status.history) skips the canary steps. The explicit opt-in to the steps is the
    annotation `modelserve rollback --canary` sets (ROLLBACK_STEPS_ANNOTATION).
    """
    if i.target == stable or i.steps_requested_for == i.target:
        return False
    return any(e.revision == i.target and e.outcome in _SERVED
               for e in i.status.history or ())


def plan(i: Inputs) -> Plan:
    st = i.status
    stable = st.revision
    if stable not in i.ready or stable is None:
        stable = None
    previous = st.previous_revision if st.previous_revision in i.ready else None
    aborted = st.aborted_revision
    control = st.control or RolloutControl()

    if stable is None or stable == i.target:
        # First rollout, or the spec points at what serves: it is (or becomes) stable.
        p = Plan(i.target, i.target_version, i.total, previous=previous,
                 previous_retire_at=st.previous_retire_at if previous else None)
        if st.canary_revision not in (None, i.target):
            p.events.append(("CanaryAbandoned", f"canary revision {st.canary_revision} "
                             f"dropped: the spec points at revision {i.target} again", False))
        p.consumed_control = st.control is not None
        return p

    stable_version = i.version_of.get(stable, st.model_version or "")
    if i.target == aborted:
        # Rolled back: serve stable until the spec changes (GitOps owns the spec).
        return Plan(stable, stable_version, i.total, aborted=aborted, previous=previous,
                    previous_retire_at=st.previous_retire_at if previous else None,
                    problem=_aborted_problem(st, aborted),
                    consumed_control=st.control is not None)

    if i.target == previous and i.ready.get(previous, 0) >= i.total:
        # Fast path back: the previous stable is still up, switch to it at once.
        p = Plan(i.target, i.target_version, i.total, previous=stable,
                 previous_retire_at=i.now + i.spec.rollout.scale_down_delay_seconds)
        p.events.append(("RolledBack", f"revision {i.target} serves again at once: it was "
                         f"still scaled up; revision {stable} is kept for "
                         f"{i.spec.rollout.scale_down_delay_seconds}s", False))
        return p

    if i.spec.rollout.strategy == "Recreate":
        p = Plan(i.target, i.target_version, i.total, recreate=True)
        p.events.append(("Recreating", f"stopping revision {stable} before starting "
                         f"revision {i.target} (strategy Recreate)", False))
        return p

    return _canary(i, stable, stable_version, previous, control)


def _aborted_problem(st: ModelDeploymentStatus, aborted: int) -> Problem:
    for condition in st.conditions or ():
        if condition.type == "Degraded" and condition.status == "True":
            return Problem(condition.reason or "RolledBack", condition.message or "")
    return Problem("RolledBack", f"revision {aborted} was rolled back; change the spec to "
                                 f"try a new version")


def _canary(i: Inputs, stable: int, stable_version: str, previous: int | None,
            control: RolloutControl) -> Plan:
    st = i.status
    events: list[tuple[str, str, bool]] = []
    rollback = is_rollback(i, stable)
    if st.canary_revision == i.target:
        state = CanaryState(i.target, st.current_step or 0,
                            st.step_started_at or i.now, st.canary_weight or 0)
    else:
        if st.canary_revision is not None:
            events.append(("CanaryAbandoned", f"canary revision {st.canary_revision} "
                           f"abandoned for the newer revision {i.target}", False))
        state = CanaryState(i.target, 0, i.now, 0)
        if rollback:
            events.append(("RollbackStarted", f"rolling back to revision {i.target} "
                           f"({i.target_version}): it served before, so it skips the canary "
                           f"steps and takes all traffic once its pods are ready", False))
        else:
            events.append(("CanaryStarted", f"canary revision {i.target} "
                           f"({i.target_version}) started against stable revision {stable}",
                           False))
        previous = None  # a new rollout retires the old fast-path revision
    steps = ROLLING_STEPS if rollback else _steps(i.spec)
    decision: Decision = advance(steps, state, Observations(
        now=i.now, total_replicas=i.total, ready_canary_pods=i.ready.get(i.target, 0),
        canary_restarts=i.restarts.get(i.target, 0), started=i.created.get(i.target, i.now),
        deadline_seconds=i.spec.rollout.progress_deadline_seconds,
        analysis=i.analysis, analysis_message=i.analysis_message,
        promote=bool(control.promote), promote_full=bool(control.promote_full),
        abort=bool(control.abort),
    ))
    consumed = bool(control.abort or control.promote_full
                    or decision.consumed_promote)

    if decision.action == "abort":
        p = Plan(stable, stable_version, i.total, canary=i.target,
                 canary_version=i.target_version, canary_replicas=0, aborted=i.target,
                 problem=Problem(decision.reason, decision.message), consumed_control=consumed,
                 events=[*events, (decision.reason, decision.message, True)])
        return p

    if decision.action == "promote":
        ready = i.ready.get(i.target, 0)
        if ready >= i.total:
            p = Plan(i.target, i.target_version, i.total, previous=stable,
                     previous_retire_at=i.now + i.spec.rollout.scale_down_delay_seconds,
                     consumed_control=consumed)
            done = (("RolledBack", f"revision {i.target} serves again (rollback)")
                    if rollback else ("Promoted", f"{decision.message}; revision {i.target} "
                                                  f"is stable"))
            p.events = [*events, (done[0], f"{done[1]}, revision {stable} kept for "
                                  f"{i.spec.rollout.scale_down_delay_seconds}s", False)]
            return p
        # Scale the canary to full size first; move traffic only once it is ready.
        return Plan(stable, stable_version, stable_replicas(i.total, decision.state.weight),
                    canary=i.target, canary_version=i.target_version,
                    canary_replicas=i.total, weight=decision.state.weight,
                    state=decision.state,
                    consumed_control=consumed, events=events, requeue=2.0,
                    progressing=(True, "Promoting", f"scaling revision {i.target} to "
                                 f"{i.total} pods ({ready} ready) before switching traffic"))

    progressing = (True, decision.reason, decision.message)
    if rollback:
        progressing = (True, "RollingBack", f"rollback to revision {i.target}: "
                       f"{i.ready.get(i.target, 0)}/{i.total} pods ready; revision {stable} "
                       f"serves until then")
    return Plan(stable, stable_version, stable_replicas(i.total, decision.state.weight),
                canary=i.target, canary_version=i.target_version,
                canary_replicas=canary_replicas(i.total, decision.wanted_weight),
                weight=decision.state.weight, state=decision.state, previous=previous,
                previous_retire_at=st.previous_retire_at if previous else None,
                consumed_control=consumed, paused=decision.paused, events=events,
                requeue=decision.requeue, progressing=progressing)
