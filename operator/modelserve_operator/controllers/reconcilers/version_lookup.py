"""Which ModelVersion the spec asks for; template mode snapshots it into an owned one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from modelserve_operator import API_VERSION
from modelserve_operator.api import ModelDeploymentSpec, ModelVersionSpec
from modelserve_operator.api.modeldeployment import HistoryEntry
from modelserve_operator.controllers.cluster.context import TEMPLATE_HASH, Context, content_hash
from modelserve_operator.controllers.decisions import history
from modelserve_operator.controllers.decisions.conditions import Problem
from modelserve_operator.render import Meta, validate
from modelserve_operator.render.labels import REVISION, common_labels
from modelserve_operator.render.names import dns_label


def pydantic_message(error: ValidationError, prefix: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{prefix}.{where}: {first['msg']}"


async def load_version(ctx: Context, namespace: str, name: str) -> dict[str, Any] | None:
    """A ModelVersion from the store, confirmed with one read when the store lacks it
    (at start-up the watch may not have listed it yet)."""
    mv = ctx.store.get("ModelVersion", namespace, name)
    if mv is None:
        found = await ctx.kube.get(API_VERSION, "ModelVersion", namespace, name)
        mv = ctx.store.upsert("ModelVersion", found) if found else None
    return mv


async def version_spec(ctx: Context, namespace: str, name: str) -> ModelVersionSpec | None:
    mv = await load_version(ctx, namespace, name)
    try:
        return ModelVersionSpec.model_validate(mv["spec"]) if mv else None
    except ValidationError:
        return None


async def _snapshot(ctx: Context, md: dict[str, Any], meta: Meta, template: ModelVersionSpec,
                    revision_hint: int) -> str:
    digest = content_hash(template.wire())
    for mv in ctx.store.owned("ModelVersion", meta.namespace, meta.name):
        if mv["metadata"].get("annotations", {}).get(TEMPLATE_HASH) == digest:
            return mv["metadata"]["name"]
    name = dns_label(meta.name, f"-v{revision_hint}")
    await ctx.ensure("ModelVersion", {
        "apiVersion": API_VERSION, "kind": "ModelVersion",
        "metadata": {
            "name": name, "namespace": meta.namespace,
            "labels": {**common_labels(meta.name), REVISION: str(revision_hint)},
            "annotations": {TEMPLATE_HASH: digest},
            "ownerReferences": [meta.owner_reference()],
        },
        "spec": template.wire(),
    })
    await ctx.event(md, "RevisionSnapshotted",
                    f"spec.template saved as ModelVersion {name} (revision {revision_hint})")
    return name


async def target_version(ctx: Context, md: dict[str, Any], meta: Meta,
                         spec: ModelDeploymentSpec, deployments: list[dict[str, Any]],
                         past: Sequence[HistoryEntry],
                         ) -> tuple[str | None, ModelVersionSpec | None, Problem | None]:
    """(ModelVersion name, its spec, problem) for what the spec says should serve."""
    if spec.template is not None:
        owned = ctx.store.owned("ModelVersion", meta.namespace, meta.name)
        hint = history.next_revision(deployments, past, owned)
        name = await _snapshot(ctx, md, meta, spec.template, hint)
        version: ModelVersionSpec | None = spec.template
    else:
        name = spec.model_version or ""
        mv = await load_version(ctx, meta.namespace, name)
        if mv is None:
            return name, None, Problem(
                "ModelVersionNotFound",
                f"spec.modelVersion: ModelVersion {name!r} does not exist in namespace "
                f"{meta.namespace}; create it or fix the name. The current revision keeps "
                f"serving.")
        try:
            version = ModelVersionSpec.model_validate(mv["spec"])
        except ValidationError as error:
            return name, None, Problem("InvalidModelVersion",
                                       pydantic_message(error, f"ModelVersion {name} spec"))
    problems = validate(version)
    if problems:
        return name, None, Problem("InvalidModelVersion",
                                   f"ModelVersion {name}: " + "; ".join(problems))
    return name, version, None
