"""One Deployment per live revision (stable, canary) plus the optional fallback."""

from __future__ import annotations

from typing import Any

from modelserve_operator.api.modeldeployment import ModelDeploymentSpec
from modelserve_operator.api.modelversion import ModelVersionSpec
from modelserve_operator.render import labels, names
from modelserve_operator.render.pod import render_pod_template
from modelserve_operator.render.settings import Meta, RenderSettings

# Each revision is its own Deployment, so a Deployment's template only changes when the
# pod overrides do; old ReplicaSets are of no use for our rollbacks.
REPLICASET_HISTORY = 1


def _strategy(spec: ModelDeploymentSpec) -> dict[str, Any]:
    if spec.rollout.strategy == "Recreate":
        return {"type": "Recreate"}
    # Never drop below the wanted capacity while replacing pods: surge one at a time,
    # which also asks the cluster for at most one extra pod's GPUs.
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def render_deployment(md: Meta, spec: ModelDeploymentSpec, version_name: str,
                      version: ModelVersionSpec, revision: int, role: str,
                      replicas: int | None, settings: RenderSettings) -> dict[str, Any]:
    """The Deployment of one revision in `role` ("stable", "canary" or "fallback").

    `replicas=None` leaves `spec.replicas` out so an HPA can own it: writing it would
    reset the HPA's choice on every reconcile (k8s-nim-operator PR #681).
    """
    deployment_spec: dict[str, Any] = {}
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    deployment_spec.update({
        "selector": {"matchLabels": labels.selector_labels(md.name, revision, role)},
        "strategy": _strategy(spec),
        "revisionHistoryLimit": REPLICASET_HISTORY,
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "template": render_pod_template(md.name, spec, version_name, version, revision,
                                        role, settings),
    })
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.deployment_name(md.name, revision, role),
            "namespace": md.namespace,
            "labels": {
                **labels.revision_labels(md.name, revision, role),
                labels.APP_VERSION: names.label_value(version_name),
            },
            "annotations": {labels.MODEL_VERSION_ANNOTATION: version_name},
            "ownerReferences": [md.owner_reference()],
        },
        "spec": deployment_spec,
    }
