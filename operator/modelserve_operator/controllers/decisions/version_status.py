"""A ModelVersion's status from its problems: pure (reconcilers/model_version.py writes it)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from modelserve_operator.api import ModelVersionSpec, ModelVersionStatus
from modelserve_operator.controllers.decisions.conditions import set_condition
from modelserve_operator.render import validate


def problems_of(spec: dict[str, Any]) -> list[str]:
    """What makes this ModelVersion unservable, each naming the field; [] when none."""
    try:
        return validate(ModelVersionSpec.model_validate(spec))
    except ValidationError as error:
        return [f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]


def compute_status(problems: list[str], previous: dict[str, Any], generation: int,
                   now: str) -> dict[str, Any]:
    """The status to store for a version with these problems."""
    old = previous.get("conditions")
    reason = "Invalid" if problems else "Valid"
    message = "; ".join(problems) if problems else "the version can be served"
    # Stalled is what kstatus (Flux, kpt) reads as Failed: a ModelVersion's spec is
    # immutable, so an invalid one never becomes valid; the user must create a new one.
    return ModelVersionStatus.model_validate({
        "observedGeneration": generation, "phase": reason, "conditions": [
            set_condition(old, "Ready", not problems, reason, message, generation, now),
            set_condition(old, "Stalled", bool(problems), reason, message, generation, now),
        ]}).merge_patch()
