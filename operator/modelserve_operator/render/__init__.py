"""Pure rendering: (ModelDeployment, ModelVersion, observed state) -> Kubernetes objects.

No I/O, no clock, no randomness: the same inputs give the same dicts, which is what lets
the controllers skip writes that change nothing and the tests compare golden files.
"""

from modelserve_operator.render.autoscaling import render_hpa, render_scaled_object
from modelserve_operator.render.deployment import render_deployment
from modelserve_operator.render.labels import serving_selector
from modelserve_operator.render.service import (
    endpoint_url,
    render_revision_service,
    render_service,
)
from modelserve_operator.render.settings import Meta, RenderSettings
from modelserve_operator.render.validate import validate, validate_overrides

__all__ = [
    "Meta",
    "RenderSettings",
    "endpoint_url",
    "render_deployment",
    "render_hpa",
    "render_revision_service",
    "render_scaled_object",
    "render_service",
    "serving_selector",
    "validate",
    "validate_overrides",
]
