"""status.modelProgress from what not-Ready pods report about themselves.

A pod that is not Ready yet serves its progress as JSON on its HTTP port (the runtime's
progress.py: the fetch init container while it downloads, then the runtime while it
loads or builds an engine). The reconcile reads it (cluster/pod_progress.py) and this
module turns the reports into one concise status field: the slowest pod's phase, bytes
done / total, rate and time left. Pure: the clock comes in as arguments.

Rewriting status on every byte would be a write storm, so a new summary replaces the
stored one only when the phase or the number of pods changed, when it moved by
MIN_STEP_PERCENT, or when the stored one is REFRESH_SECONDS old.
"""

from __future__ import annotations

import datetime
from typing import Any, NamedTuple

MIN_STEP_PERCENT = 5.0
REFRESH_SECONDS = 10.0
# How often the reconcile comes back while pods are not Ready: progress has no watch
# event of its own.
POLL_SECONDS = 5.0
DOWNLOAD_PHASES = ("waiting for the node cache", "downloading")


class Target(NamedTuple):
    """Where one not-Ready pod answers its progress."""

    pod: str
    ip: str
    port: int


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions") or [])


def waiting(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods that are on their way but not Ready, and not going away."""
    return [p for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") in ("Pending", "Running") and not _ready(p)]


def _working(pod: dict[str, Any]) -> bool:
    """A container runs (the fetch, or the runtime loading): someone serves progress."""
    status = pod.get("status", {})
    return any("running" in (c.get("state") or {})
               for kind in ("initContainerStatuses", "containerStatuses")
               for c in status.get(kind) or [])


def targets(pods: list[dict[str, Any]], port: int) -> list[Target]:
    """Those of `waiting(pods)` with an IP and a running container to ask, on the HTTP
    port the operator rendered (RenderSettings.port)."""
    return [Target(p["metadata"]["name"], p["status"]["podIP"], port)
            for p in waiting(pods) if p.get("status", {}).get("podIP") and _working(p)]


def human(n: float, unit: str) -> str:
    if unit != "bytes":
        return f"{n:.0f} {unit}"
    for name in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or name == "GiB":
            return f"{n:.0f} {name}" if name == "B" else f"{n:.1f} {name}"
        n /= 1024
    raise AssertionError("unreachable")


def _percent(report: dict[str, Any]) -> float | None:
    done, total = report.get("done"), report.get("total")
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        return 100.0 * done / total
    return None


def _slowness(report: dict[str, Any]) -> tuple[int, float]:
    # Downloads come before loading; within a phase, the least done is the slowest.
    stage = 0 if report.get("phase") in DOWNLOAD_PHASES else 1
    return stage, _percent(report) or 0.0


def describe(report: dict[str, Any], pods: int) -> str:
    """`downloading 512.0 MiB of 1.0 GiB (50%), 85.3 MiB/s, about 6 s left (slowest of 2
    pods)`, or `building engine, 40 s` for a phase without a count; the parts a report
    lacks are left out."""
    unit = report.get("unit") or "bytes"
    text = str(report.get("phase"))
    done, total = report.get("done"), report.get("total")
    elapsed = report.get("elapsedSeconds")
    if done is None and isinstance(elapsed, int | float):  # seconds in the phase so far
        text += f", {elapsed:.0f} s"
    if isinstance(done, int):
        text += f" {human(done, unit)}"
        if isinstance(total, int) and total > 0:
            text += f" of {human(total, unit)} ({100 * done / total:.0f}%)"
    rate = report.get("ratePerSecond")
    if isinstance(rate, int | float) and rate > 0:
        text += f", {human(rate, unit)}/s"
    left = report.get("secondsLeft")
    if isinstance(left, int | float):
        text += f", about {left:.0f} s left"
    return text + (f" (slowest of {pods} pods)" if pods > 1 else "")


def _seconds(rfc3339: str | None) -> float | None:
    try:
        return datetime.datetime.strptime(rfc3339 or "", "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC).timestamp()
    except ValueError:  # absent or edited by hand: treat as old
        return None


def summarise(reports: dict[str, dict[str, Any]], not_ready: int,
              previous: dict[str, Any] | None, now: float,
              now_text: str) -> dict[str, Any] | None:
    """status.modelProgress: the stored one while it is still fresh enough, else a new one.

    `reports` maps the pods that answered to their report; `not_ready` counts all the
    revision's pods that are not Ready (some may not answer yet). None once no pod waits.
    """
    answered = {pod: r for pod, r in reports.items() if r.get("phase")}
    if not not_ready or not answered:
        return None
    slowest = min(answered.values(), key=_slowness)
    done, total = slowest.get("done"), slowest.get("total")
    left = slowest.get("secondsLeft")
    fresh = {
        "phase": str(slowest["phase"]),
        "message": describe(slowest, not_ready),
        "pods": not_ready,
        "unit": (slowest.get("unit") or "bytes") if isinstance(done, int) else None,
        "done": done if isinstance(done, int) else None,
        "total": total if isinstance(total, int) else None,
        "secondsLeft": round(left) if isinstance(left, int | float) else None,
        "elapsedSeconds": (round(elapsed) if isinstance(elapsed := slowest.get(
            "elapsedSeconds"), int | float) else None),
        "updatedAt": now_text,
    }
    fresh = {k: v for k, v in fresh.items() if v is not None}
    if previous and not _due(previous, fresh, now):
        return previous
    return fresh


def _due(previous: dict[str, Any], fresh: dict[str, Any], now: float) -> bool:
    if (previous.get("phase"), previous.get("pods")) != (fresh["phase"], fresh["pods"]):
        return True
    old, new = _percent(previous), _percent(fresh)
    if old is not None and new is not None and abs(new - old) >= MIN_STEP_PERCENT:
        return True
    written = _seconds(previous.get("updatedAt"))
    return written is None or now - written >= REFRESH_SECONDS
