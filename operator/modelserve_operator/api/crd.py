"""Build CustomResourceDefinitions from the pydantic models.

Pydantic's JSON Schema is close to, but not, a Kubernetes structural schema: it uses
$ref/$defs, anyOf-with-null for optionals, titles, and `additionalProperties: true`.
`structural()` rewrites it into the form the API server accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from modelserve_operator import GROUP, VERSION
from modelserve_operator.api.base import cel
from modelserve_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from modelserve_operator.api.modelversion import ModelVersionSpec, ModelVersionStatus

_DROP = {"title"}


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of `model`, with CEL rules and descriptions."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _convert(raw, defs)


def _convert(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    while "$ref" in node or "anyOf" in node:
        if "$ref" in node:  # inline the definition; the referring field's keys win
            target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
            node = {**target, **node}
        if "anyOf" in node:  # Optional[X] is anyOf [X, null]: keep X
            options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
            if len(options) != 1:
                raise ValueError(f"unions are not structural: {options}")
            node = {**options[0], **node}
    if node.get("default", 0) is None:
        del node["default"]
    # extra="forbid" emits `false`, free-form maps `true`: neither is structural.
    if isinstance(node.get("additionalProperties"), bool):
        del node["additionalProperties"]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _convert(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value, defs)
        else:
            out[key] = value
    if "properties" in out:
        out.setdefault("type", "object")
    return out


def _column(name: str, json_path: str, kind: str = "string", priority: int = 0,
            description: str = "") -> dict[str, Any]:
    column = {"name": name, "type": kind, "jsonPath": json_path, "description": description}
    if priority:
        column["priority"] = priority
    return column


def _crd(kind: str, plural: str, short: str, spec: dict[str, Any], status: dict[str, Any],
         columns: list[dict[str, Any]], scale: bool, description: str) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["modelserve"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def model_version_crd() -> dict[str, Any]:
    spec = structural(ModelVersionSpec)
    spec["x-kubernetes-validations"] = [
        cel("self == oldSelf",
            "spec is immutable: create a new ModelVersion for a new model or setting"),
    ]
    columns = [
        _column("Format", ".spec.model.format", description="Artifact format"),
        _column("Backend", ".spec.runtime.backend", description="Inference backend"),
        _column("GPUs", ".spec.resources.gpu.count", "integer", description="GPUs per replica"),
        _column("Status", ".status.phase", description="Valid or Invalid"),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    return _crd("ModelVersion", "modelversions", "mv", spec, structural(ModelVersionStatus),
                columns, scale=False,
                description="ModelVersion is an immutable snapshot of a model to serve.")


def model_deployment_crd() -> dict[str, Any]:
    columns = [
        _column("Ready", ".status.ready", description="Ready/desired replicas"),
        _column("Revision", ".status.revision", "integer", description="Serving revision"),
        _column("Canary", ".status.canaryRevision", "integer", description="Canary revision"),
        _column("Weight", ".status.canaryWeight", "integer", description="Canary traffic %"),
        _column("Status", ".status.phase", description="Ready, Progressing or Degraded"),
        _column("Version", ".status.modelVersion", priority=1, description="Serving version"),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    return _crd("ModelDeployment", "modeldeployments", "md", structural(ModelDeploymentSpec),
                structural(ModelDeploymentStatus), columns, scale=True,
                description="ModelDeployment serves a ModelVersion and rolls out new ones.")


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, as written to crds/."""
    return {
        f"{GROUP}_modelversions.yaml": model_version_crd(),
        f"{GROUP}_modeldeployments.yaml": model_deployment_crd(),
    }
