"""The pod template: runtime container, model fetch, probes, security, GPU scheduling."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from modelserve_operator.api.modeldeployment import (
    ModelDeploymentSpec,
    PodOverrides,
    ProbeSettings,
)
from modelserve_operator.api.modelversion import GPU, ModelVersionSpec
from modelserve_operator.render import labels, merge, model
from modelserve_operator.render.settings import RenderSettings
from modelserve_runtime import contract

RUNTIME_CONTAINER = "runtime"
FETCH_CONTAINER = "fetch-model"
CACHE_DIR = "/cache"
GPU_RESOURCE = "nvidia.com/gpu"
RUN_AS = 1000

# Probe defaults. The startup probe gives a TensorRT engine build 10 minutes (300 x 2 s)
# before liveness may restart the pod, and looks every 2 s so a model that loads in a
# second is Ready a moment later (a 10 s period added up to 10 s to every pod start, and
# so to every rollout step). Readiness is quick so traffic leaves a sick pod within
# seconds.
PROBE_DEFAULTS = {
    "startup": ProbeSettings(initial_delay_seconds=0, period_seconds=2, timeout_seconds=5,
                             failure_threshold=300),
    "readiness": ProbeSettings(initial_delay_seconds=0, period_seconds=2, timeout_seconds=5,
                               failure_threshold=3),
    "liveness": ProbeSettings(initial_delay_seconds=0, period_seconds=10, timeout_seconds=5,
                              failure_threshold=3),
}
# Graceful removal: kube-proxy (and every load balancer) learns that a pod is terminating
# a moment after the kubelet does. The preStop sleep keeps the runtime serving normally
# meanwhile, so requests routed by stale rules still succeed; then SIGTERM makes the
# runtime finish in-flight requests (its --drain-timeout-s) and exit.
# The sleep action needs no shell in the image (Kubernetes >= 1.30).
PRESTOP_SLEEP_SECONDS = 5
TERMINATION_GRACE_SECONDS = PRESTOP_SLEEP_SECONDS + int(contract.DRAIN_TIMEOUT_S) + 5

PROBE_PATHS = {
    "startup": contract.HEALTH_READY,
    "readiness": contract.HEALTH_READY,
    "liveness": contract.HEALTH_LIVE,
}

# Env names the operator sets from the spec; users cannot override them (merge.merge_env).
CONTRACT_ENV = (
    contract.MODEL_NAME,
    contract.MODEL_VERSION,
    contract.MODEL_PATH,
    contract.MODEL_FORMAT,
    contract.BACKEND,
    contract.PRECISION,
    contract.MAX_BATCH_SIZE,
    contract.MAX_QUEUE_DELAY_US,
    contract.MAX_QUEUE_SIZE,
    contract.PORT,
    contract.GRPC_PORT_ENV,
    contract.ENGINE_CACHE_DIR,
)


def version_hash(version: ModelVersionSpec) -> str:
    """Digest of the ModelVersion spec, on the pod template for humans and tooling.

    Defaults are left out so that a new API field with a default does not change every
    hash, and so every pod template, rolling every model on an operator upgrade.
    """
    values = version.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def is_gpu_pod(gpu: GPU) -> bool:
    # A MIG profile is a GPU request even if count says 0 (validate() flags that combination).
    return gpu.count > 0 or gpu.mig is not None


def _contract_env(md_name: str, version_name: str, version: ModelVersionSpec,
                  settings: RenderSettings) -> list[dict[str, Any]]:
    runtime = version.runtime
    values = (
        md_name,
        version_name,
        model.model_path(version.model),
        version.model.format,
        runtime.backend,
        runtime.precision,
        str(runtime.max_batch_size),
        str(runtime.max_queue_delay_microseconds),
        str(runtime.max_queue_size),
        str(settings.port),
        str(settings.grpc_port),
        CACHE_DIR,
    )
    env = [{"name": n, "value": v} for n, v in zip(CONTRACT_ENV, values, strict=True)]
    if runtime.input_shapes:
        # TorchScript carries no signature: the runtime needs the inputs spelled out.
        specs = [{"name": i.name, "datatype": i.datatype or "FP32", "shape": i.shape}
                 for i in runtime.input_shapes]
        env.append({"name": contract.INPUTS,
                    "value": json.dumps(specs, separators=(",", ":"))})
    return env


# Overridable: libraries (CUDA, torch, huggingface) write caches under $HOME, which the
# read-only root filesystem would otherwise make fail.
DEFAULT_ENV = ({"name": "HOME", "value": "/tmp"},)


def _env(md_name: str, version_name: str, version: ModelVersionSpec,
         pod: PodOverrides, settings: RenderSettings) -> list[dict[str, Any]]:
    return merge.merge_env(
        _contract_env(md_name, version_name, version, settings),
        DEFAULT_ENV,
        [e.wire() for e in version.env or []],
        [e.wire() for e in pod.env or []],
    )


def _probe(kind: str, tuned: ProbeSettings | None) -> dict[str, Any]:
    settings = PROBE_DEFAULTS[kind].model_copy(
        update=tuned.model_dump(exclude_none=True) if tuned else {}
    )
    return {"httpGet": {"path": PROBE_PATHS[kind], "port": contract.HTTP_PORT},
            **settings.wire()}


def _resources(version: ModelVersionSpec) -> dict[str, Any]:
    res = version.resources
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if res.cpu:
        requests["cpu"] = res.cpu  # no CPU limit: throttling an inference server hurts p99
    if res.memory:
        requests["memory"] = limits["memory"] = res.memory
    if res.gpu.mig:
        limits[f"nvidia.com/mig-{res.gpu.mig}"] = 1
    elif res.gpu.count > 0:
        # Extended resources cannot overcommit: the request defaults to the limit.
        limits[GPU_RESOURCE] = res.gpu.count
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _container_security() -> dict[str, Any]:
    """Pod Security Standards "restricted", plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
    }


def _volumes(version: ModelVersionSpec, pod: PodOverrides,
             node_cache: bool, settings: RenderSettings) -> tuple[list, list, list]:
    """(volumes, runtime mounts, fetch mounts): ours first, then the user's that fit."""
    pvc = model.parse_pvc(version.model.uri) is not None
    fetch_only_volumes, fetch_only_mounts = ([], []) if pvc else model.fetch_volumes(
        version.model, node_cache, settings)
    ours = [
        model.model_volume(version.model),
        {"name": "tmp", "emptyDir": {}},
        {"name": "cache", "emptyDir": {}},
        # Shared memory for the runtime's engine process and PyTorch's tensor sharing;
        # the container default (64 MiB) is smaller than one worker's batch buffers.
        {"name": "shm", "emptyDir": {"medium": "Memory"}},
        *fetch_only_volumes,
    ]
    runtime_mounts = [
        {"name": model.MODEL_VOLUME, "mountPath": model.MODEL_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "shm", "mountPath": "/dev/shm"},
    ]
    if node_cache:
        runtime_mounts.append({"name": model.CACHE_VOLUME, "mountPath": model.NODE_CACHE_DIR,
                               "readOnly": True})
    user_mounts = pod.volume_mounts or []
    volumes = merge.merge_named(ours, pod.volumes)
    mounts = merge.merge_named(runtime_mounts, user_mounts, key="mountPath")
    fetch_mounts = [] if pvc else merge.merge_named(
        [{"name": model.MODEL_VOLUME, "mountPath": model.MODEL_DIR},
         {"name": "tmp", "mountPath": "/tmp"},
         *fetch_only_mounts],
        # The user's mounts (e.g. cloud credentials files) are what the fetch needs most.
        [m for m in user_mounts if m.get("mountPath") != CACHE_DIR],
        key="mountPath",
    )
    return volumes, mounts, fetch_mounts


def _gpu_scheduling(gpu: GPU, pod: PodOverrides, settings: RenderSettings) -> dict[str, Any]:
    """Tolerations, affinity, nodeSelector and runtimeClassName of the pod."""
    gpu_pod = is_gpu_pod(gpu)
    ours = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}] if gpu_pod else []
    product = gpu.product if gpu_pod else None
    runtime_class = pod.runtime_class_name or (settings.gpu_runtime_class if gpu_pod else None)
    out = {
        "nodeSelector": merge.merge_node_selector(pod.node_selector, product),
        "affinity": merge.merge_affinity(pod.affinity, product),
        "tolerations": merge.merge_tolerations(ours, pod.tolerations),
        "runtimeClassName": runtime_class,
    }
    return {k: v for k, v in out.items() if v}


def render_pod_template(md_name: str, spec: ModelDeploymentSpec, version_name: str,
                        version: ModelVersionSpec, revision: int, role: str,
                        settings: RenderSettings) -> dict[str, Any]:
    """The Deployment's `spec.template` for one revision."""
    pod = spec.pod or PodOverrides()
    probes = spec.probes
    image = version.runtime.image or settings.runtime_image
    env = _env(md_name, version_name, version, pod, settings)
    node_cache = model.uses_node_cache(version.model, spec.model_cache, settings)
    volumes, mounts, fetch_mounts = _volumes(version, pod, node_cache, settings)

    runtime: dict[str, Any] = {
        "name": RUNTIME_CONTAINER,
        "image": image,
        "command": [contract.COMMAND],
        "args": [contract.SERVE, *(version.args or [])],
        "ports": [{"name": contract.HTTP_PORT, "containerPort": settings.port,
                   "protocol": "TCP"},
                  {"name": contract.GRPC_PORT, "containerPort": settings.grpc_port,
                   "protocol": "TCP"}],
        "env": env,
        "startupProbe": _probe("startup", probes.startup if probes else None),
        "readinessProbe": _probe("readiness", probes.readiness if probes else None),
        "livenessProbe": _probe("liveness", probes.liveness if probes else None),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    resources = _resources(version)
    if resources:
        runtime["resources"] = resources
    if node_cache:
        runtime["env"] = [*env, {"name": model.CACHE_ENTRY_ENV,
                                 "value": model.cache_entry(version.model)}]

    pod_spec: dict[str, Any] = {}
    if fetch_mounts:
        fetch: dict[str, Any] = {
            "name": FETCH_CONTAINER,
            "image": settings.fetch_image or image,
            "command": model.fetch_command(version.model, node_cache, settings),
            # Same env as the runtime: the user's credentials (AWS_*, GOOGLE_*) live there.
            "env": copy.deepcopy(env),
            "securityContext": _container_security(),
            "volumeMounts": fetch_mounts,
        }
        # Same CPU/memory as the runtime (never GPUs): init containers do not add to the
        # pod's request, and namespaces with a ResourceQuota reject containers without.
        cpu_mem = {kind: {k: v for k, v in values.items() if k in ("cpu", "memory")}
                   for kind, values in resources.items()}
        cpu_mem = {k: v for k, v in cpu_mem.items() if v}
        if cpu_mem:
            fetch["resources"] = cpu_mem
        pod_spec["initContainers"] = [fetch]
    pod_spec["containers"] = [runtime]
    pod_spec["terminationGracePeriodSeconds"] = TERMINATION_GRACE_SECONDS
    pod_spec["volumes"] = volumes
    pod_spec["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # Every revision has its own Service: service links would put a handful of variables
    # per Service of the namespace into every pod, thousands with many ModelDeployments.
    pod_spec["enableServiceLinks"] = False
    pod_spec.update(_gpu_scheduling(version.resources.gpu, pod, settings))
    if pod.service_account_name:
        pod_spec["serviceAccountName"] = pod.service_account_name
    if pod.priority_class_name:
        pod_spec["priorityClassName"] = pod.priority_class_name
    if pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in pod.image_pull_secrets]

    annotations = merge.merge_maps(
        {
            labels.MODEL_VERSION_ANNOTATION: version_name,
            labels.VERSION_HASH_ANNOTATION: version_hash(version),
            # With an init container present, `kubectl logs` would otherwise ask which.
            "kubectl.kubernetes.io/default-container": RUNTIME_CONTAINER,
        },
        pod.annotations,
    )
    return {
        "metadata": {
            "labels": merge.merge_maps(
                labels.pod_labels(md_name, version_name, revision, role), pod.labels
            ),
            "annotations": annotations,
        },
        "spec": pod_spec,
    }
