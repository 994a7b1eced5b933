"""Where the model artifact comes from and where the runtime finds it."""

from __future__ import annotations

from dataclasses import dataclass

from modelserve_operator.api.modelversion import ModelArtifact

MODEL_DIR = "/models"
MODEL_VOLUME = "model"

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


def fetch_command(artifact: ModelArtifact) -> list[str]:
    """The init container's command: a digest mismatch fails it, so the pod never serves."""
    command = ["modelserve-runtime", "fetch", "--uri", artifact.uri]
    if artifact.sha256:
        command += ["--sha256", artifact.sha256]
    return [*command, "--dest", model_path(artifact)]
