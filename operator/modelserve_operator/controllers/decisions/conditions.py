"""Pure helpers for Kubernetes-style conditions and pod trouble.

Status is a function of observations: callers gather what they saw, these functions
say what it means, and the caller writes only when the result differs from what is
stored (cert-manager's policy chain and prometheus-operator's conditions do the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelserve_operator.render.pod import FETCH_CONTAINER


@dataclass(frozen=True)
class Problem:
    """Something a user must act on: a CamelCase reason and a sentence saying what to do."""

    reason: str
    message: str


def set_condition(previous: list[dict[str, Any]] | None, type_: str, status: bool,
                  reason: str, message: str, generation: int, now: str) -> dict[str, Any]:
    """The new condition; lastTransitionTime moves only when the status flips."""
    value = "True" if status else "False"
    old = next((c for c in previous or () if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == value else now
    return {"type": type_, "status": value, "reason": reason, "message": message,
            "lastTransitionTime": since, "observedGeneration": generation}


def _waiting_reasons(pod: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for container in pod.get("status", {}).get("containerStatuses", []):
        waiting = container.get("state", {}).get("waiting")
        if waiting:
            out.append((waiting.get("reason", ""), waiting.get("message", "")))
    return out


def pod_problem(pods: list[dict[str, Any]], gpu_request: str | None) -> Problem | None:
    """The most actionable trouble among `pods`, or None when there is none.

    Checked in the order a user would fix them: a pod that cannot be placed first, then
    one that cannot get its image, then one that starts and crashes.
    """
    for pod in pods:
        for condition in pod.get("status", {}).get("conditions", []):
            if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                    and condition.get("reason") == "Unschedulable"):
                detail = condition.get("message", "")
                name = pod["metadata"]["name"]
                if gpu_request and gpu_request in detail:
                    return Problem(
                        "GPUsUnavailable",
                        f"pod {name} cannot be scheduled: no node has enough free "
                        f"{gpu_request} ({detail}). Lower spec.replicas, free GPUs, or add "
                        f"GPU nodes.")
                return Problem(
                    "Unschedulable",
                    f"pod {name} cannot be scheduled: {detail}. Check nodeSelector, "
                    f"tolerations and resource requests.")
    if found := _first_waiting(pods, ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")):
        name, reason, detail = found
        return Problem(
            "ImagePullFailed",
            f"pod {name} cannot pull its image ({reason}: {detail}). Check "
            f"spec.runtime.image and imagePullSecrets.")
    if found := _first_fetch_failure(pods):
        name, detail = found
        return Problem(
            "ModelFetchFailed",
            f"pod {name} cannot fetch its model: {detail}")
    if found := _first_waiting(pods, ("CrashLoopBackOff",)):
        name, reason, detail = found
        return Problem(
            "CrashLooping",
            f"pod {name} keeps crashing ({detail or reason}). Read its logs: "
            f"kubectl logs {name} --previous.")
    return None


def _first_waiting(pods: list[dict[str, Any]],
                   reasons: tuple[str, ...]) -> tuple[str, str, str] | None:
    """(pod name, reason, detail) of the first container waiting for one of `reasons`."""
    for pod in pods:
        for reason, detail in _waiting_reasons(pod):
            if reason in reasons:
                return pod["metadata"]["name"], reason, detail
    return None


def _first_fetch_failure(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(pod name, message) of the first pod whose model fetch exited with an error.

    The fetch writes one line naming the URI and what to check to its termination
    message; the kubelet keeps it in the init container's state (or lastState while it
    waits to retry), so no logs need reading.
    """
    for pod in pods:
        for container in pod.get("status", {}).get("initContainerStatuses", []):
            if container.get("name") != FETCH_CONTAINER:
                continue
            for state in (container.get("state"), container.get("lastState")):
                terminated = (state or {}).get("terminated")
                if terminated and terminated.get("exitCode", 0) != 0:
                    detail = (terminated.get("message") or "").strip() or (
                        f"exit code {terminated.get('exitCode')}; read "
                        f"kubectl logs {pod['metadata']['name']} -c {FETCH_CONTAINER}")
                    return pod["metadata"]["name"], detail
    return None


def fetching_pods(pods: list[dict[str, Any]]) -> int:
    """How many of `pods` are downloading their model (the fetch init container runs)."""
    return sum(1 for pod in pods
               for c in pod.get("status", {}).get("initContainerStatuses", [])
               if c.get("name") == FETCH_CONTAINER and "running" in (c.get("state") or {}))
