"""Revision numbers and `status.history`: pure bookkeeping over what was observed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelserve_operator.api.modeldeployment import HistoryEntry
from modelserve_operator.render.labels import MODEL_VERSION_ANNOTATION, POOL, REVISION


def revision_of(obj: dict[str, Any]) -> int:
    """The revision label of an owned object; 0 when it has none (revisions start at 1)."""
    value = obj["metadata"].get("labels", {}).get(REVISION, "")
    return int(value) if value.isdigit() else 0


def revision_for(model_version: str, deployments: list[dict[str, Any]],
                 history: Sequence[HistoryEntry], owned_versions: list[dict[str, Any]]) -> int:
    """The revision number of `model_version`: the one it already has, else the next one.

    A version served before keeps its number (a rollback to revision 3 serves revision
    3 again), so `modelserve history` and the Deployment names stay recognisable.
    """
    for dep in deployments:
        meta = dep["metadata"]
        if (meta.get("annotations", {}).get(MODEL_VERSION_ANNOTATION) == model_version
                and meta.get("labels", {}).get(POOL) == "primary" and revision_of(dep)):
            return revision_of(dep)
    for entry in history:
        if entry.model_version == model_version:
            return entry.revision
    for mv in owned_versions:
        if mv["metadata"]["name"] == model_version and revision_of(mv):
            return revision_of(mv)
    return next_revision(deployments, history, owned_versions)


def next_revision(deployments: list[dict[str, Any]], history: Sequence[HistoryEntry],
                  owned_versions: list[dict[str, Any]]) -> int:
    known = [e.revision for e in history]
    known += [r for r in map(revision_of, [*deployments, *owned_versions]) if r]
    return max(known, default=0) + 1


def record(history: Sequence[HistoryEntry], revision: int, model_version: str, now: str,
           rolled_out: bool, retired: list[int], keep: int,
           aborted: tuple[int, str] | None = None,
           live: frozenset[int] = frozenset()) -> list[HistoryEntry]:
    """History after this reconcile, newest first, at most `keep` entries (min 1).

    The serving revision is always listed; `retired` revisions stopped serving now;
    `aborted` is a (revision, ModelVersion) canary that was rolled back. Revisions in
    `live` (a canary, a previous stable still scaled up) are listed beyond the limit.
    """
    entries = list(history)
    current = next((e for e in entries if e.revision == revision), None)
    if current is None or current.stopped_at:
        if current is not None:
            entries.remove(current)
        current = HistoryEntry(revision=revision, model_version=model_version, started_at=now,
                               outcome="Progressing")
        entries.insert(0, current)
    if rolled_out and current.outcome != "Serving":
        current = _replace(entries, current, outcome="Serving")
    for entry in list(entries):
        if entry.revision in retired and not entry.stopped_at:
            outcome = ("Superseded" if entry.outcome in ("Serving", "Progressing")
                       else entry.outcome)
            updated = _replace(entries, entry, stopped_at=now, outcome=outcome)
            current = updated if entry is current else current
    if aborted is not None:
        entry = next((e for e in entries if e.revision == aborted[0]), None)
        if entry is None:
            entries.append(HistoryEntry(revision=aborted[0], model_version=aborted[1],
                                        started_at=now, stopped_at=now, outcome="RolledBack"))
        elif entry is not current and entry.outcome != "RolledBack":
            _replace(entries, entry, outcome="RolledBack", stopped_at=entry.stopped_at or now)
    older = sorted((e for e in entries if e is not current),
                   key=lambda e: (e.started_at or "", e.revision), reverse=True)
    room = max(keep, 1) - 1 - sum(1 for e in older if e.revision in live)
    kept = [e for e in older if e.revision in live or (room := room - 1) >= 0]
    return [current, *kept]


def _replace(entries: list[HistoryEntry], entry: HistoryEntry, **changes: Any) -> HistoryEntry:
    """Swap `entry` for a copy with `changes` (entries are immutable); the copy."""
    updated = entry.model_copy(update=changes)
    entries[next(i for i, e in enumerate(entries) if e is entry)] = updated
    return updated
