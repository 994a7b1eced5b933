"""Pydantic models of the CRDs: the single source of truth for their schemas."""

from modelserve_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from modelserve_operator.api.modelversion import ModelVersionSpec, ModelVersionStatus

__all__ = [
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelVersionSpec",
    "ModelVersionStatus",
]
