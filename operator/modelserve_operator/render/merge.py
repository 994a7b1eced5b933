"""Merging the user's `spec.pod` overrides with what the operator renders.

One rule throughout: the operator's entries win a clash, because they are what make the
pod schedulable, selectable and servable; the user's entries fill in everything else.
Every entry is copied: the result shares nothing with the (frozen) spec or with itself,
so a caller may mutate it, and YAML dumps of it carry no anchors.
Duplicates are removed rather than passed on: the API server rejects some (duplicate
volume names, mount paths) and server-side apply of list entries that compare equal
fights forever over others (a user-set `nvidia.com/gpu` toleration next to ours broke
NVIDIA's NIM operator, k8s-nim-operator#288).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def merge_maps(ours: Mapping[str, str], theirs: Mapping[str, str] | None) -> dict[str, str]:
    """Labels, annotations, nodeSelector: the user's keys plus ours, ours winning."""
    return {**(theirs or {}), **ours}


def toleration_key(toleration: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """What makes two tolerations the same, with the API server's defaults filled in.

    `operator` defaults to Equal and a missing value or effect means the empty string,
    so `{key: k, operator: Equal}` and `{key: k}` are one toleration.
    """
    return (
        toleration.get("key") or "",
        toleration.get("operator") or "Equal",
        toleration.get("value") or "",
        toleration.get("effect") or "",
    )


def merge_tolerations(
    ours: Iterable[Mapping[str, Any]], theirs: Iterable[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """Ours, then the user's that are not already there (first occurrence wins)."""
    merged: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for toleration in [*ours, *(theirs or [])]:
        merged.setdefault(toleration_key(toleration), copy.deepcopy(dict(toleration)))
    return list(merged.values())


def merge_named(
    ours: Iterable[Mapping[str, Any]],
    theirs: Iterable[Mapping[str, Any]] | None,
    key: str = "name",
) -> list[dict[str, Any]]:
    """Lists keyed by one field (volumes by name, mounts by mountPath).

    Ours come first and cannot be replaced; among the user's own entries a later one
    replaces an earlier one with the same key, as a map would, keeping its position.
    """
    merged: dict[Any, dict[str, Any]] = {e[key]: copy.deepcopy(dict(e)) for e in ours}
    reserved = set(merged)
    for entry in theirs or []:
        if entry.get(key) not in reserved:
            merged[entry.get(key)] = copy.deepcopy(dict(entry))
    return list(merged.values())


def merge_env(
    essential: Iterable[Mapping[str, Any]],
    defaults: Iterable[Mapping[str, Any]],
    *user_lists: Iterable[Mapping[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Container env: essential entries are fixed, defaults and user entries merge by name.

    `essential` is the runtime contract rendered from the spec (model path, backend, …):
    changing one through env would make the pod disagree with its ModelVersion, so a
    user entry with such a name is dropped (validate() reports it). `defaults` are our
    conveniences (HOME) that a user may override. The user lists apply in order — the
    ModelVersion's env, then the ModelDeployment's `spec.pod.env` — later winning.
    """
    merged: dict[str, dict[str, Any]] = {e["name"]: copy.deepcopy(dict(e)) for e in essential}
    fixed = set(merged)
    for entries in (defaults, *user_lists):
        for entry in entries or []:
            if entry["name"] not in fixed:
                merged[entry["name"]] = copy.deepcopy(dict(entry))
    return list(merged.values())


def merge_affinity(
    theirs: Mapping[str, Any] | None, gpu_product: str | None
) -> dict[str, Any] | None:
    """The user's affinity with our GPU product requirement AND-ed into every term.

    nodeSelectorTerms are OR-ed by the scheduler, so adding our requirement as a term of
    its own would let pods land on any node matching a user term; adding it to each term
    keeps the user's alternatives and still requires the product. A user expression on
    the product label itself is replaced: two different `In` lists would make the pod
    unschedulable, and the ModelVersion is where the product is chosen.
    """
    affinity = copy.deepcopy(dict(theirs)) if theirs else {}
    if gpu_product:
        required = affinity.setdefault("nodeAffinity", {}).setdefault(
            "requiredDuringSchedulingIgnoredDuringExecution", {}
        )
        terms = required.get("nodeSelectorTerms") or [{}]
        for term in terms:
            kept = [e for e in term.get("matchExpressions") or []
                    if e.get("key") != GPU_PRODUCT_LABEL]
            ours = {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [gpu_product]}
            term["matchExpressions"] = [*kept, ours]
        required["nodeSelectorTerms"] = terms
    return affinity or None


def merge_node_selector(
    theirs: Mapping[str, str] | None, gpu_product: str | None
) -> dict[str, str] | None:
    """The user's nodeSelector, minus a product label that contradicts the ModelVersion.

    We require the product through node affinity (so it can AND with the user's terms);
    a user `nvidia.com/gpu.product` selector next to it would either repeat it or make
    the pod unschedulable, so while the version names a product the version decides.
    """
    selector = {k: v for k, v in (theirs or {}).items()
                if not (gpu_product and k == GPU_PRODUCT_LABEL)}
    return selector or None
