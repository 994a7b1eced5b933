"""ModelVersion: an immutable snapshot of what to serve."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelserve_operator.api.base import ApiModel, Condition, EnvVar, cel, validations

ModelFormat = Literal["onnx", "torchscript", "tensorrt-plan"]
Backend = Literal["tensorrt", "torch", "onnxruntime"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]

# Which backend can load which artifact format. The API server checks the enums; this
# table is the operator's own check (a CEL rule per pair would cost too much budget).
SUPPORTED_FORMATS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnx",),
    "torch": ("torchscript",),
    "tensorrt": ("onnx", "tensorrt-plan"),
}


class S3Options(ApiModel):
    """Where an S3-compatible store is, for stores other than AWS S3 itself."""

    endpoint: str | None = Field(
        None,
        description="Endpoint URL, e.g. http://seaweedfs.storage:8333 or https://minio.example.com.",
        max_length=2048,
        pattern=r"^https?://[^/]+",
    )
    region: str | None = Field(None, description="Region, e.g. eu-west-1.", max_length=64)
    force_path_style: bool | None = Field(
        None,
        description="Path-style addressing (endpoint/bucket/key) instead of bucket.endpoint; "
        "most self-hosted stores need it.",
    )


class OCIOptions(ApiModel):
    """How to talk to the registry of an oci:// model."""

    plain_http: bool | None = Field(
        None, description="Use plain HTTP instead of HTTPS (a registry inside the cluster)."
    )


class SecretReference(ApiModel):
    """A Secret in the ModelVersion's namespace."""

    name: str = Field(description="Secret name.", min_length=1, max_length=253)


class ModelArtifact(ApiModel):
    """Where the model file lives and how to check it."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.s3) || self.uri.startsWith('s3://')",
                "spec.model.s3 applies to s3:// URIs only",
                ".s3",
            ),
            cel(
                "!has(self.oci) || self.uri.startsWith('oci://')",
                "spec.model.oci applies to oci:// URIs only",
                ".oci",
            ),
        )
    }

    uri: str = Field(
        description=(
            "Location of the model artifact: s3://bucket/key, gs://…, https://…, "
            "pvc://claim/path or oci://registry/repo:tag."
        ),
        min_length=1,
        max_length=2048,
        pattern=r"^(s3|gs|https?|pvc|oci|file)://.+",
    )
    format: ModelFormat = Field(description="Artifact format: onnx, torchscript or tensorrt-plan.")
    sha256: str | None = Field(
        None,
        description="Hex SHA-256 of the artifact; verified before the runtime serves it.",
        pattern=r"^[a-f0-9]{64}$",
    )
    secret_ref: SecretReference | None = Field(
        None,
        description=(
            "Secret with the store's credentials, mounted read-only into the fetch container "
            "only: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and optionally AWS_ENDPOINT_URL, "
            "AWS_REGION) for s3://, service-account.json for gs://, .dockerconfigjson or "
            "username/password for oci://. Without it the pod's service account is used."
        ),
    )
    s3: S3Options | None = Field(None, description="S3-compatible store settings.")
    oci: OCIOptions | None = Field(None, description="OCI registry settings.")


class InputShape(ApiModel):
    """A model input's name and shape (batch dimension excluded; -1 for dynamic)."""

    name: str = Field(description="Input tensor name.", max_length=253)
    shape: list[int] = Field(
        description="Dimensions after the batch dimension; -1 marks a dynamic one.",
        max_length=16,
    )
    datatype: str | None = Field(
        None, description="Open Inference Protocol datatype, e.g. FP32, INT64.", max_length=16
    )


class RuntimeSettings(ApiModel):
    """How the inference runtime loads and batches the model."""

    backend: Backend = Field(description="Inference backend: tensorrt, torch or onnxruntime.")
    precision: Precision = Field("fp16", description="Numeric precision the engine runs in.")
    max_batch_size: int = Field(
        8, ge=1, le=4096, description="Largest batch the dynamic batcher forms."
    )
    max_queue_delay_microseconds: int = Field(
        2000,
        ge=0,
        le=10_000_000,
        description="How long the batcher waits to fill a batch before running it anyway.",
    )
    max_queue_size: int = Field(
        1024, ge=1, le=1_000_000, description="Queued requests per model before answering 503."
    )
    input_shapes: list[InputShape] | None = Field(
        None,
        description="Input shapes, for backends that need them to build an engine.",
        max_length=64,
    )
    image: str | None = Field(
        None,
        description="Runtime image; defaults to the operator's configured runtime image.",
        max_length=1024,
    )


class GPU(ApiModel):
    """GPU request: a count of whole GPUs or one MIG slice, optionally a product."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.count) || self.count >= 0",
                "spec.resources.gpu.count must be 0 or more (0 runs on CPU nodes)",
                ".count",
            ),
            cel(
                "!has(self.mig) || !has(self.count) || self.count <= 1",
                "spec.resources.gpu.mig asks for one MIG slice; set count to 1 or leave it out",
                ".mig",
            ),
        )
    }

    count: int = Field(1, description="Whole GPUs per replica; 0 schedules on CPU nodes.")
    product: str | None = Field(
        None,
        description="Required nvidia.com/gpu.product node label, e.g. NVIDIA-H100-80GB-HBM3.",
        max_length=253,
    )
    mig: str | None = Field(
        None,
        description="MIG profile such as 1g.10gb; requests nvidia.com/mig-<profile>.",
        pattern=r"^[0-9]+g\.[0-9]+gb$",
        max_length=32,
    )


class Resources(ApiModel):
    """Compute resources of one replica."""

    gpu: GPU = Field(default_factory=GPU, description="GPU request.")
    memory: str | None = Field(
        None, description="Memory request and limit, e.g. 16Gi.", max_length=64
    )
    cpu: str | None = Field(None, description="CPU request, e.g. 4.", max_length=64)


class ModelVersionSpec(ApiModel):
    """What to serve. Immutable: create a new ModelVersion for a new version."""

    model: ModelArtifact = Field(description="The model artifact.")
    runtime: RuntimeSettings = Field(description="Runtime and batching settings.")
    resources: Resources = Field(default_factory=Resources, description="Per-replica resources.")
    env: list[EnvVar] | None = Field(
        None, description="Extra environment for the runtime container.", max_length=128
    )
    args: list[str] | None = Field(
        None, description="Extra arguments for the runtime.", max_length=128
    )


class ModelVersionStatus(ApiModel):
    """What the operator found checking this version."""

    observed_generation: int | None = Field(None, description="Generation last checked.")
    conditions: list[Condition] | None = Field(
        None, description="Ready is True when the version is usable by a ModelDeployment; "
        "Stalled is True when it never can be (kstatus reads it as Failed)."
    )
    phase: str | None = Field(None, description="Valid or Invalid, for printer columns.")
    used_by: list[str] | None = Field(
        None, description="ModelDeployments that serve or keep this version."
    )
