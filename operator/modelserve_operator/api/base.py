"""Shared pieces of the API models: camelCase wire names, CEL rules, conditions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base of every CRD model: camelCase on the wire, unknown fields rejected.

    The API server prunes unknown fields before we see them, so `extra="forbid"` only
    bites in unit tests and in the CLI, where a typo should fail loudly.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it (camelCase, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def merge_patch(self) -> dict[str, Any]:
        """The object as a JSON merge patch (how status is written): the fields that were
        given, camelCase; one given as None removes the stored field."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry; the message names the field to fix."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules for a model or a field."""
    return {"x-kubernetes-validations": list(rules)}


# Kubernetes-native objects we pass through unchanged (affinity, volumes …). The API
# server keeps them as written; the operator validates what it uses.
FREE_FORM = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


class Condition(ApiModel):
    """A standard Kubernetes condition (metav1.Condition shape)."""

    type: str = Field(description="Condition type: Ready, Progressing, Degraded, or "
                      "kstatus's Reconciling and Stalled.")
    status: str = Field(description='"True", "False" or "Unknown".')
    reason: str | None = Field(None, description="CamelCase reason a program can match.")
    message: str | None = Field(None, description="What happened and what to do, for humans.")
    last_transition_time: str | None = Field(
        None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        None, description="metadata.generation the condition was computed for."
    )


class EnvVar(ApiModel):
    """An environment variable given to the runtime container."""

    name: str = Field(description="Variable name.", max_length=253)
    value: str | None = Field(None, description="Literal value.", max_length=32768)
    value_from: dict[str, Any] | None = Field(
        None,
        description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef …).",
        json_schema_extra=FREE_FORM,
    )
