"""Where the model artifact comes from and where the runtime finds it."""

from __future__ import annotations

from dataclasses import dataclass

from modelserve_operator.api.modeldeployment import ModelCache
from modelserve_operator.api.modelversion import ModelArtifact
from modelserve_operator.render.settings import RenderSettings
from modelserve_runtime import contract

MODEL_DIR = "/models"
MODEL_VOLUME = "model"
# The Secret of spec.model.secretRef, mounted into the fetch container only; the runtime
# reads keys from here (modelserve_runtime/fetch/credentials.py).
CREDENTIALS_VOLUME = "model-credentials"
CREDENTIALS_DIR = "/var/run/secrets/modelserve/storage"
CACHE_VOLUME = "model-cache"
NODE_CACHE_DIR = "/model-cache"
# The runtime holds a shared lock on its model's cache entry so that eviction on the node
# skips it (modelserve_runtime/fetch/cache.py); it still serves its own copy in MODEL_DIR.
CACHE_ENTRY_ENV = contract.MODEL_CACHE_ENTRY


def cache_entry(artifact: ModelArtifact) -> str:
    return f"{NODE_CACHE_DIR}/sha256/{(artifact.sha256 or '').lower()}"

# The fetched file keeps an extension the runtime's loaders recognise.
EXTENSIONS = {"onnx": "onnx", "torchscript": "pt", "tensorrt-plan": "plan"}


@dataclass(frozen=True)
class PvcSource:
    """A model already on a PersistentVolumeClaim: mounted read-only, nothing fetched."""

    claim: str
    path: str  # inside the claim, without a leading slash; may be empty


def parse_pvc(uri: str) -> PvcSource | None:
    """`pvc://claim/some/path` -> PvcSource; None for every other scheme."""
    if not uri.startswith("pvc://"):
        return None
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return PvcSource(claim=claim, path=path.strip("/"))


def model_path(artifact: ModelArtifact) -> str:
    """MODELSERVE_MODEL_PATH: the file the runtime loads."""
    pvc = parse_pvc(artifact.uri)
    if pvc is not None:
        return f"{MODEL_DIR}/{pvc.path}" if pvc.path else MODEL_DIR
    return f"{MODEL_DIR}/model.{EXTENSIONS[artifact.format]}"


def model_volume(artifact: ModelArtifact) -> dict[str, object]:
    pvc = parse_pvc(artifact.uri)
    if pvc is not None:
        # readOnly on the claim too, not only on the mount: a serving pod must never be
        # able to change the model other revisions (or other teams) load.
        return {"name": MODEL_VOLUME,
                "persistentVolumeClaim": {"claimName": pvc.claim, "readOnly": True}}
    return {"name": MODEL_VOLUME, "emptyDir": {}}


def uses_node_cache(artifact: ModelArtifact, cache: ModelCache | None,
                    settings: RenderSettings) -> bool:
    """The cache is keyed by digest: it needs sha256, a fetched model and the chart's path."""
    if settings.model_cache_path is None or not artifact.sha256:
        return False
    if parse_pvc(artifact.uri) is not None:
        return False
    wanted = cache.enabled if cache is not None and cache.enabled is not None else None
    return settings.model_cache_default if wanted is None else wanted


def fetch_volumes(artifact: ModelArtifact, node_cache: bool,
                  settings: RenderSettings) -> tuple[list[dict], list[dict]]:
    """(volumes, fetch-container mounts) for credentials and the node cache."""
    volumes: list[dict] = []
    mounts: list[dict] = []
    if artifact.secret_ref is not None:
        volumes.append({"name": CREDENTIALS_VOLUME,
                        "secret": {"secretName": artifact.secret_ref.name}})
        mounts.append({"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR,
                       "readOnly": True})
    if node_cache:
        # type Directory, not DirectoryOrCreate: the kubelet would create it root-owned,
        # which the non-root fetch cannot write; the chart's node setup makes it.
        volumes.append({"name": CACHE_VOLUME,
                        "hostPath": {"path": settings.model_cache_path, "type": "Directory"}})
        mounts.append({"name": CACHE_VOLUME, "mountPath": NODE_CACHE_DIR})
    return volumes, mounts


def fetch_command(artifact: ModelArtifact, node_cache: bool = False,
                  settings: RenderSettings | None = None) -> list[str]:
    """The init container's command: a digest mismatch fails it, so the pod never serves."""
    command = [contract.COMMAND, contract.FETCH, "--uri", artifact.uri]
    if artifact.sha256:
        command += ["--sha256", artifact.sha256]
    s3 = artifact.s3
    if s3 is not None:
        if s3.endpoint:
            command += ["--s3-endpoint", s3.endpoint]
        if s3.region:
            command += ["--s3-region", s3.region]
        if s3.force_path_style:
            command.append("--s3-path-style")
    if artifact.oci is not None and artifact.oci.plain_http:
        command.append("--oci-plain-http")
    if node_cache:
        command += ["--cache-dir", NODE_CACHE_DIR]
        if settings is not None and settings.model_cache_max_size:
            command += ["--cache-max-size", settings.model_cache_max_size]
    if settings is not None:
        # The runtime container has not started: its HTTP port is free for the progress
        # endpoint the operator reads while the pod is not Ready.
        command += ["--progress-port", str(settings.port)]
    return [*command, "--dest", model_path(artifact)]
