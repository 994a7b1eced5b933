"""The canary state machine: pure, so every path is unit-tested without a cluster.

The reconcile gathers observations (is the canary ready at the size its weight needs,
is it restarting, what did analysis measure, did a user ask to promote or abort, what
time is it) and `advance` says what to do. Steps that are already satisfied are passed
in the same call, so a canary never waits a reconcile per step for nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from modelserve_operator.api.modeldeployment import CanaryStep

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'1m30s' -> 90.0 (the CRD pattern has already checked the syntax)."""
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", text))


@dataclass(frozen=True)
class CanaryState:
    """Progress of one canary, kept in status so a restarted operator resumes it."""

    revision: int
    step: int = 0              # index of the step in progress
    step_started: float = 0.0  # epoch seconds when that step began
    weight: int = 0            # percent of traffic the canary has now


@dataclass(frozen=True)
class Observations:
    now: float
    total_replicas: int             # replicas the ModelDeployment serves with
    ready_canary_pods: int          # canary pods Ready now
    canary_restarts: int            # container restarts since the canary started
    started: float                  # when the canary Deployment was created
    deadline_seconds: float         # spec.rollout.progressDeadlineSeconds
    analysis: bool | None = None    # verdict for the current analysis step (None: pending)
    analysis_message: str = ""
    promote: bool = False           # `modelserve promote`: finish the current pause
    promote_full: bool = False      # `modelserve promote --full`: skip every step
    abort: bool = False             # `modelserve abort`


@dataclass(frozen=True)
class Decision:
    """What the reconcile must do now."""

    action: str                     # "progress" | "promote" | "abort"
    state: CanaryState
    wanted_weight: int              # weight to size the canary for (before it is Ready)
    reason: str = ""
    message: str = ""
    paused: bool = False            # waiting for `modelserve promote`
    requeue: float | None = None    # seconds until something is due
    consumed_promote: bool = False  # the promote request was used up


def advance(steps: list[CanaryStep], state: CanaryState, obs: Observations) -> Decision:
    """Run steps from `state` as far as the observations allow."""
    if obs.abort:
        return Decision("abort", state, 0, "Aborted",
                        f"canary revision {state.revision} aborted by a user request")
    if obs.promote_full:  # every step counts as done, also for the reconciles that follow
        return Decision("promote", replace(state, step=len(steps)), 100, "PromotedFull",
                        f"canary revision {state.revision} promoted by a user request",
                        consumed_promote=True)
    if obs.canary_restarts > 0:
        return Decision("abort", state, 0, "CanaryUnhealthy",
                        f"canary revision {state.revision} restarted {obs.canary_restarts} "
                        f"time(s); traffic is back on the stable revision")
    decision = _run_steps(steps, state, obs)
    # A promote request is one-shot: spent on the pause it ends, or dropped when no pause
    # is waiting, so it can never skip a later pause by surprise.
    return replace(decision, consumed_promote=obs.promote)


def _run_steps(steps: list[CanaryStep], state: CanaryState, obs: Observations) -> Decision:
    promote = obs.promote
    while state.step < len(steps):
        step = steps[state.step]
        where = f"step {state.step + 1}/{len(steps)}"
        if step.set_weight is not None:
            needed = canary_replicas(obs.total_replicas, step.set_weight)
            if obs.ready_canary_pods < needed:
                if obs.now - obs.started > obs.deadline_seconds:
                    return Decision(
                        "abort", state, 0, "ProgressDeadlineExceeded",
                        f"canary revision {state.revision} was not ready for "
                        f"{step.set_weight}% within spec.rollout.progressDeadlineSeconds "
                        f"({obs.deadline_seconds:g}s); traffic is back on stable")
                return Decision(
                    "progress", state, step.set_weight, "WaitingForCanary",
                    f"{where}: {obs.ready_canary_pods}/{needed} canary pods ready for "
                    f"{step.set_weight}%",
                    requeue=max(1.0, obs.started + obs.deadline_seconds - obs.now))
            state = _next(replace(state, weight=step.set_weight), obs.now)
        elif step.pause is not None:
            if not promote:
                if not step.pause.duration:
                    return Decision("progress", state, state.weight, "Paused",
                                    f"{where}: paused at {state.weight}% until "
                                    f"`modelserve promote`", paused=True)
                left = state.step_started + parse_duration(step.pause.duration) - obs.now
                if left > 0:
                    return Decision("progress", state, state.weight, "Pausing",
                                    f"{where}: pausing {step.pause.duration} at "
                                    f"{state.weight}%", requeue=left)
            promote = False  # spent on this pause
            state = _next(state, obs.now)
        else:  # analysis
            if obs.analysis is False:
                return Decision("abort", state, 0, "AnalysisFailed",
                                f"analysis of canary revision {state.revision} failed: "
                                f"{obs.analysis_message}")
            if obs.analysis is None:
                return Decision("progress", state, state.weight, "Analyzing",
                                f"{where}: analysis running "
                                f"({obs.analysis_message or 'waiting for measurements'})",
                                requeue=2.0)
            state = _next(state, obs.now)
            obs = replace(obs, analysis=None)  # a later analysis step measures anew
    return Decision("promote", state, 100, "Promoted",
                    f"canary revision {state.revision} passed every step")


def _next(state: CanaryState, now: float) -> CanaryState:
    return replace(state, step=state.step + 1, step_started=now)


def canary_replicas(total: int, weight: int) -> int:
    """Canary pods for `weight`% of `total`: at least one as soon as the weight is > 0."""
    if weight <= 0:
        return 0
    return max(1, -(-total * weight // 100))


def stable_replicas(total: int, weight: int) -> int:
    """Stable pods kept for the remaining share: never fewer than that share needs."""
    return max(1 if weight < 100 else 0, -(-total * (100 - weight) // 100))
