"""Checks the API server cannot make, run before rendering.

Each message names the field, the value and what to do: it becomes the `Degraded`
condition's message, and the user reads it in `kubectl describe`.
"""

from __future__ import annotations

import re
from collections import Counter

from modelserve_operator.api.modeldeployment import ModelDeploymentSpec
from modelserve_operator.api.modelversion import SUPPORTED_FORMATS, ModelVersionSpec
from modelserve_operator.render import merge, model
from modelserve_operator.render.names import MAX_LABEL
from modelserve_operator.render.pod import CACHE_DIR, CONTRACT_ENV, is_gpu_pod

# Kubernetes resource.Quantity: a decimal number with an optional SI, binary or
# exponent suffix ("16Gi", "500m", "1e3"); "16GB" is a common mistake it rejects.
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([numkMGTPE]|[KMGTPE]i|[eE][-+]?[0-9]+)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_RESERVED_MOUNTS = (model.MODEL_DIR, "/tmp", CACHE_DIR)


def validate(spec_version: ModelVersionSpec) -> list[str]:
    """Problems that make a ModelVersion unservable; empty when it is fine."""
    v = spec_version
    problems: list[str] = []

    formats = SUPPORTED_FORMATS.get(v.runtime.backend, ())
    if v.model.format not in formats:
        able = sorted(b for b, fs in SUPPORTED_FORMATS.items() if v.model.format in fs)
        problems.append(
            f"spec.runtime.backend {v.runtime.backend!r} cannot load spec.model.format "
            f"{v.model.format!r}: use a format it reads ({', '.join(formats)}) or a backend "
            f"that reads {v.model.format} ({', '.join(able)})"
        )

    gpu = v.resources.gpu
    if v.runtime.backend == "tensorrt" and not is_gpu_pod(gpu):
        problems.append(
            "spec.runtime.backend 'tensorrt' needs a GPU but spec.resources.gpu.count is 0: "
            "set spec.resources.gpu.count to 1 or more (or a MIG profile), or use backend "
            "'onnxruntime' to run on CPU"
        )
    if gpu.mig and gpu.count == 0:
        problems.append(
            f"spec.resources.gpu.count is 0 (CPU) but spec.resources.gpu.mig is "
            f"{gpu.mig!r}: remove mig to run on CPU, or set count to 1 for one MIG slice"
        )
    if gpu.product and not (len(gpu.product) <= MAX_LABEL and _LABEL_VALUE.match(gpu.product)):
        problems.append(
            f"spec.resources.gpu.product {gpu.product!r} is not a valid node label value "
            "(63 characters, letters, digits, '-', '_', '.'): copy it from a node's "
            "nvidia.com/gpu.product label"
        )

    for field in ("memory", "cpu"):
        quantity = getattr(v.resources, field)
        if quantity is not None and not _QUANTITY.match(quantity):
            problems.append(
                f"spec.resources.{field} {quantity!r} is not a Kubernetes quantity: "
                "write e.g. 16Gi or 500Mi for memory, 4 or 500m for cpu"
            )

    pvc = model.parse_pvc(v.model.uri)
    if pvc is not None:
        if not (len(pvc.claim) <= 253 and _DNS_SUBDOMAIN.match(pvc.claim)):
            problems.append(
                f"spec.model.uri {v.model.uri!r}: {pvc.claim!r} is not a valid "
                "PersistentVolumeClaim name; write pvc://<claim>/<path to the model file>"
            )
        if not pvc.path:
            problems.append(
                f"spec.model.uri {v.model.uri!r} names no file: write "
                "pvc://<claim>/<path to the model file inside the claim>"
            )

    problems += _env_problems("spec.env", [e.name for e in v.env or []])
    return problems


def validate_overrides(spec: ModelDeploymentSpec, version: ModelVersionSpec) -> list[str]:
    """`spec.pod` entries that rendering drops because ours win (see merge.py).

    Rendering still succeeds, so these suit a Warning Event rather than `Degraded`.
    """
    pod = spec.pod
    if pod is None:
        return []
    problems = _env_problems("spec.pod.env", [e.name for e in pod.env or []])
    for volume in pod.volumes or []:
        if volume.get("name") in (model.MODEL_VOLUME, "tmp", "cache"):
            problems.append(
                f"spec.pod.volumes: the name {volume.get('name')!r} is the operator's own "
                "volume and is ignored: rename it"
            )
    for mount in pod.volume_mounts or []:
        if mount.get("mountPath") in _RESERVED_MOUNTS:
            problems.append(
                f"spec.pod.volumeMounts: mountPath {mount.get('mountPath')!r} is the "
                f"operator's own and is ignored: mount somewhere other than "
                f"{', '.join(_RESERVED_MOUNTS)}"
            )
    product = version.resources.gpu.product
    if product and merge.GPU_PRODUCT_LABEL in (pod.node_selector or {}):
        problems.append(
            f"spec.pod.nodeSelector[{merge.GPU_PRODUCT_LABEL!r}] is ignored: the "
            f"ModelVersion's spec.resources.gpu.product ({product!r}) chooses the GPU"
        )
    return problems


def _env_problems(field: str, env_names: list[str]) -> list[str]:
    problems = [
        f"{field}: {name} is set by the operator from the ModelVersion spec and cannot be "
        "overridden: remove it and change the matching spec field instead"
        for name in env_names if name in CONTRACT_ENV
    ]
    problems += [
        f"{field}: {name} is listed {count} times: keep one"
        for name, count in Counter(env_names).items() if count > 1
    ]
    return problems
