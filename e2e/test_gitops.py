"""GitOps safety: the operator never writes a ModelDeployment's spec, and everything it
creates is owned by (a child of) a ModelDeployment, so Argo CD sees no drift."""

from __future__ import annotations

import json

from e2e.kube import Kubectl, eventually
from e2e.objects import (
    condition,
    deployment,
    modelserve,
    status,
    version,
    wait_status,
)

OWN_MANAGER = "modelserve-operator"
ROLLOUT = {"strategy": "Canary", "progressDeadlineSeconds": 8,
           "canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
TRAFFIC = {"provider": "gateway-api", "gatewayRef": {"name": "inference"}}


def spec_and_generation(kubectl: Kubectl, namespace: str, name: str) -> tuple[dict, int]:
    md = kubectl.get("md", name, namespace)
    return md["spec"], md["metadata"]["generation"]


def operator_wrote_only_status(kubectl: Kubectl, namespace: str, name: str) -> None:
    """Every field the operator manages on the md is under the status subresource."""
    md = kubectl.run("get", "md", name, "-n", namespace, "-o", "json",
                     "--show-managed-fields").stdout
    for entry in json.loads(md)["metadata"].get("managedFields", []):
        if entry["manager"] == OWN_MANAGER:
            assert entry.get("subresource") == "status", entry


def children_are_owned(kubectl: Kubectl, namespace: str) -> None:
    kinds = "deploy,svc,mv,httproute,hpa"
    for obj in kubectl.get(kinds, namespace=namespace)["items"]:
        labels = obj["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/managed-by") != "modelserve":
            continue  # the user's own objects
        owners = obj["metadata"].get("ownerReferences", [])
        assert owners and owners[0]["kind"] == "ModelDeployment", obj["metadata"]["name"]


def test_canary_rollback_and_autoscaling_never_touch_spec(kubectl, namespace, operator):
    kubectl.apply([version("v1"), version("v2"),
                   version("broken", gpus=8, product="NVIDIA-B200"),
                   deployment("g", "v1", replicas=2, rollout=ROLLOUT, traffic=TRAFFIC),
                   deployment("auto", "v1", autoscaling={"minReplicas": 1, "maxReplicas": 3,
                                                         "targetGPUUtilization": 60})],
                  namespace)
    wait_status(kubectl, namespace, "g", revision=1, phase="Ready")
    timeline = [spec_and_generation(kubectl, namespace, "g")]

    # A full canary, promoted.
    kubectl.apply(deployment("g", "v2", replicas=2, rollout=ROLLOUT, traffic=TRAFFIC),
                  namespace)
    wait_status(kubectl, namespace, "g", canaryRevision=2, phase="Paused")
    timeline.append(spec_and_generation(kubectl, namespace, "g"))
    modelserve(kubectl, "promote", "g", "-n", namespace)
    wait_status(kubectl, namespace, "g", revision=2, phase="Ready")
    timeline.append(spec_and_generation(kubectl, namespace, "g"))

    # An automatic rollback: a canary that can never be scheduled.
    kubectl.apply(deployment("g", "broken", replicas=2, rollout=ROLLOUT, traffic=TRAFFIC),
                  namespace)
    eventually(lambda: condition(status(kubectl, namespace, "g"), "Degraded")
               == ("True", "ProgressDeadlineExceeded"), timeout=90, what="rollback")
    timeline.append(spec_and_generation(kubectl, namespace, "g"))

    # Generation moves only with the user's three applies; the spec is what they wrote.
    assert [g for _, g in timeline] == [1, 2, 2, 3]
    assert timeline[-1][0]["modelVersion"] == "broken"
    operator_wrote_only_status(kubectl, namespace, "g")

    # Autoscaling: an HPA owns replicas; the md's spec and generation stay the user's.
    eventually(lambda: kubectl.get("hpa", "auto", namespace, check=False), what="HPA")
    auto_spec, auto_generation = spec_and_generation(kubectl, namespace, "auto")
    assert auto_generation == 1 and "replicas" not in auto_spec.get("autoscaling", {})
    operator_wrote_only_status(kubectl, namespace, "auto")
    children_are_owned(kubectl, namespace)
